// roam-client's store of pushed checkpoints (apps/checkpoint_holder, PROTOCOL.md 14.3):
// the highest generation per connection, and only from the server that holds the
// connection now: a copy left behind on a partitioned or stopped server pushes with a
// newer clock, and must not replace the new server's.
#include "apps/checkpoint_holder.hpp"

#include <doctest/doctest.h>

#include <map>

#include "stack/migrate/checkpoint.hpp"

namespace {

using roam::CheckpointHolder;
using roam::CounterRegistry;
using roam::IpAddress;

// A sealed checkpoint as far as the client reads it: the header (PROTOCOL.md 14.2,
// big-endian), then zeros where the nonce, ciphertext and tag would be.
roam::control::CheckpointPush push(uint64_t id, uint64_t generation, uint8_t tag = 0) {
  std::vector<uint8_t> b = {'R', 'S', 'C', 'K', 1};
  for (int i = 7; i >= 0; --i) b.push_back(static_cast<uint8_t>(id >> (8 * i)));
  b.insert(b.end(), 32, 0x11);
  for (int i = 7; i >= 0; --i) b.push_back(static_cast<uint8_t>(generation >> (8 * i)));
  b.resize(roam::migrate::checkpoint_overhead + 8, tag);
  return roam::control::CheckpointPush{b};
}

struct Fixture {
  CounterRegistry registry;
  std::map<uint64_t, IpAddress> at;  // where each open connection points
  CheckpointHolder holder{registry, [this](uint64_t id) -> std::optional<IpAddress> {
                            auto it = at.find(id);
                            if (it == at.end()) return std::nullopt;
                            return it->second;
                          }};
};

const IpAddress a = *IpAddress::parse("198.18.12.2");
const IpAddress b = *IpAddress::parse("198.18.13.2");

}  // namespace

TEST_CASE("checkpoint holder: keeps the highest generation from the connection's server") {
  Fixture f;
  f.at[7] = a;
  f.holder.on_checkpoint(a, push(7, 100, 1));
  f.holder.on_checkpoint(a, push(7, 90, 2));   // older: ignored
  f.holder.on_checkpoint(a, push(7, 100, 3));  // the same generation: ignored
  REQUIRE(f.holder.latest(7) != nullptr);
  CHECK(f.holder.latest(7)->back() == 1);
  CHECK(f.holder.counters().kept == 1);
  CHECK(f.holder.counters().ignored == 2);
  f.holder.on_checkpoint(a, push(7, 101, 4));
  CHECK(f.holder.latest(7)->back() == 4);
  CHECK(f.holder.counters().not_holder == 0);
}

TEST_CASE("checkpoint holder: a server the connection left cannot replace the new server's checkpoint") {
  Fixture f;
  f.at[7] = a;
  f.holder.on_checkpoint(a, push(7, 1000, 1));
  f.at[7] = b;  // resumed (or moved) at b
  f.holder.on_checkpoint(b, push(7, 2000, 2));
  // a was partitioned or stopped when the client left; its clock went on: a higher generation.
  f.holder.on_checkpoint(a, push(7, 5000, 3));
  REQUIRE(f.holder.latest(7) != nullptr);
  CHECK(f.holder.latest(7)->back() == 2);
  CHECK(f.holder.counters().not_holder == 1);
  CHECK(f.holder.counters().kept == 2);
  CHECK(f.holder.counters().ignored == 0);
  f.holder.on_checkpoint(b, push(7, 2001, 4));  // b goes on
  CHECK(f.holder.latest(7)->back() == 4);
}

TEST_CASE("checkpoint holder: a push for a connection not open here, or malformed, is refused and changes nothing") {
  Fixture f;
  f.holder.on_checkpoint(a, push(9, 100));
  CHECK(f.holder.latest(9) == nullptr);
  CHECK(f.holder.size() == 0);
  CHECK(f.holder.counters().not_holder == 1);
  auto bad = push(9, 100);
  bad.sealed[0] = 'X';
  f.at[9] = a;
  f.holder.on_checkpoint(a, bad);
  CHECK(f.holder.size() == 0);
  CHECK(f.holder.counters().malformed == 1);
  CHECK(f.holder.counters().received == 2);
}

TEST_CASE("checkpoint holder: a push from a server the connection left names that server's stale copy") {
  Fixture f;
  std::vector<std::pair<IpAddress, uint64_t>> stale;
  f.holder.set_on_stale_copy([&](const IpAddress& server, uint64_t id) { stale.emplace_back(server, id); });
  f.at[7] = b;
  f.holder.on_checkpoint(b, push(7, 10));  // the holder: no report
  f.holder.on_checkpoint(a, push(7, 11));  // a still holds a copy
  f.holder.on_checkpoint(a, push(8, 11));  // not open here: nothing to end
  REQUIRE(stale.size() == 1);
  CHECK(stale[0].first == a);
  CHECK(stale[0].second == 7);
  CHECK(f.holder.counters().not_holder == 2);
}
