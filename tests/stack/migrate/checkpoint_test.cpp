// Client-held checkpoints (PROTOCOL.md 14): seal/open round trip, the documented header,
// every truncation, every tampered byte, a wrong key, another client's or connection's
// checkpoint, a replayed or stale generation and an expired one: each refused with its
// reason, counted, and the ledger unchanged by a refusal.
#include "stack/migrate/checkpoint.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "support/checkpoint_snapshot.hpp"

namespace {

using namespace roam;
using migrate::Checkpoint;
using migrate::CheckpointClientKey;
using migrate::CheckpointCounters;
using migrate::CheckpointError;
using migrate::CheckpointKey;
using migrate::CheckpointLedger;
using migrate::OpenLimits;

const uint64_t now = 1'800'000'000'000;
const uint64_t connection = 0x1122334455667788u;

CheckpointClientKey client_key(uint8_t fill) {
  CheckpointClientKey k;
  k.fill(fill);
  return k;
}

CheckpointKey pool_key(uint8_t first) {
  crypto::ChainKey seed;
  for (size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<uint8_t>(first + i);
  return CheckpointKey::derive(seed);
}

// A state-only snapshot as the files service checkpoints it: no queued bytes, small app state.
wire::ConnectionSnapshot snapshot() {
  wire::ConnectionSnapshot s = testing::checkpoint_snapshot(0x35bd3c33u, 0x9001);
  s.local_address = *IpAddress::parse("198.18.0.1");
  s.remote_address = *IpAddress::parse("198.18.0.2");
  s.connection_id = connection;
  s.app_state = {'f', 'i', 'l', 'e', 's', 1, 2, 3};
  s.owner = client_key(0xc1);
  return s;
}

Checkpoint checkpoint(uint64_t generation = 5) {
  Checkpoint c;
  c.header.connection_id = connection;
  c.header.client_key = client_key(0xc1);
  c.header.generation = generation;
  c.created_at_ms = now - 1000;
  c.snapshot = snapshot();
  return c;
}

std::vector<uint8_t> seal(const Checkpoint& c, const CheckpointKey& key) {
  auto sealed = migrate::seal_checkpoint(key, c);
  REQUIRE(sealed.has_value());
  return *sealed;
}

CheckpointError open_error(const CheckpointKey& key, const std::vector<uint8_t>& sealed,
                           const CheckpointClientKey& client = client_key(0xc1), uint64_t id = connection,
                           OpenLimits limits = {now, 0, 60000}) {
  auto opened = migrate::open_checkpoint(key, sealed, client, id, limits);
  REQUIRE_FALSE(opened.has_value());
  return opened.error();
}

}  // namespace

TEST_CASE("a checkpoint seals and opens to the same state; its header is the documented bytes") {
  CheckpointKey key = pool_key(1);
  Checkpoint c = checkpoint();
  std::array<uint8_t, migrate::checkpoint_nonce_bytes> nonce{};
  nonce.fill(0x4e);
  auto sealed = migrate::seal_checkpoint(key, c, nonce);
  REQUIRE(sealed.has_value());
  // magic "RSCK", version 1, connection id, client key, generation, then the nonce.
  std::vector<uint8_t> header = {'R', 'S', 'C', 'K', 1, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88};
  for (int i = 0; i < 32; ++i) header.push_back(0xc1);
  for (int b : {0, 0, 0, 0, 0, 0, 0, 5}) header.push_back(static_cast<uint8_t>(b));
  for (int i = 0; i < 24; ++i) header.push_back(0x4e);
  REQUIRE(sealed->size() > header.size());
  CHECK(std::vector<uint8_t>(sealed->begin(), sealed->begin() + static_cast<long>(header.size())) == header);
  CHECK(sealed->size() == migrate::checkpoint_overhead + 8 + wire::encode_snapshot(c.snapshot).size());
  // The app state is not readable in the sealed bytes.
  auto app = c.snapshot.app_state;
  CHECK(std::search(sealed->begin(), sealed->end(), app.begin(), app.end()) == sealed->end());

  auto peeked = migrate::peek_checkpoint_header(*sealed);
  REQUIRE(peeked.has_value());
  CHECK(*peeked == c.header);
  auto opened = migrate::open_checkpoint(key, *sealed, client_key(0xc1), connection, {now, 0, 60000});
  REQUIRE(opened.has_value());
  CHECK(opened->header == c.header);
  CHECK(opened->created_at_ms == c.created_at_ms);
  CHECK(wire::encode_snapshot(opened->snapshot) == wire::encode_snapshot(c.snapshot));
  // Random nonces: two seals of one checkpoint differ.
  CHECK(seal(c, key) != seal(c, key));
}

TEST_CASE("the checkpoint key is BLAKE2b-256 of the label and the pool seed, one per seed") {
  // PROTOCOL.md 14.1's vector (Python hashlib), K_n = 01 02 .. 20.
  const std::array<uint8_t, 32> published = {
      0x72, 0x6b, 0x40, 0x7f, 0x63, 0xa9, 0x28, 0x11, 0x0d, 0x77, 0xd6, 0x77, 0x79, 0x93, 0x72, 0x95,
      0xaa, 0x9d, 0x5b, 0x4b, 0x61, 0x1c, 0x87, 0x16, 0x10, 0xc7, 0x8f, 0x04, 0x7c, 0xc7, 0x85, 0xb9};
  CheckpointKey vector_key = pool_key(1);
  CHECK(std::equal(published.begin(), published.end(), vector_key.data()));
  // Two keys from different seeds do not open each other's checkpoints; the same seed does.
  auto sealed = seal(checkpoint(), pool_key(1));
  CHECK(migrate::open_checkpoint(pool_key(1), sealed, client_key(0xc1), connection, {now, 0, 60000}).has_value());
  CHECK(open_error(pool_key(2), sealed) == CheckpointError::forged);
}

TEST_CASE("every truncation of a checkpoint is refused") {
  CheckpointKey key = pool_key(1);
  auto sealed = seal(checkpoint(), key);
  for (size_t n = 0; n < sealed.size(); ++n) {
    CAPTURE(n);
    std::vector<uint8_t> cut(sealed.begin(), sealed.begin() + static_cast<long>(n));
    CheckpointError e = open_error(key, cut);
    if (n < migrate::checkpoint_overhead) CHECK(e == CheckpointError::truncated);
    else CHECK(e == CheckpointError::forged);
  }
  auto longer = sealed;
  longer.push_back(0);
  CHECK(open_error(key, longer) == CheckpointError::forged);
}

TEST_CASE("each tampered byte of a checkpoint is refused, never opened") {
  CheckpointKey key = pool_key(1);
  auto sealed = seal(checkpoint(), key);
  for (size_t i = 0; i < sealed.size(); ++i) {
    CAPTURE(i);
    auto bad = sealed;
    bad[i] ^= 0x01;
    CheckpointError e = open_error(key, bad);
    if (i < 4) CHECK(e == CheckpointError::bad_magic);
    else if (i == 4) CHECK(e == CheckpointError::unknown_version);
    else if (i < 13) CHECK(e == CheckpointError::wrong_connection);
    else if (i < 45) CHECK(e == CheckpointError::wrong_client);
    else CHECK(e == CheckpointError::forged);
  }
}

TEST_CASE("a checkpoint of another client or another connection is refused") {
  CheckpointKey key = pool_key(1);
  auto sealed = seal(checkpoint(), key);
  CHECK(open_error(key, sealed, client_key(0xc2)) == CheckpointError::wrong_client);
  CHECK(open_error(key, sealed, client_key(0xc1), connection + 1) == CheckpointError::wrong_connection);
  // A client that rewrites the header to its own key or another id breaks the AEAD.
  auto relabelled = sealed;
  for (size_t i = 13; i < 45; ++i) relabelled[i] = 0xc2;
  CHECK(open_error(key, relabelled, client_key(0xc2)) == CheckpointError::forged);
}

TEST_CASE("a header with connection id 0 or generation 0 is refused; sealing one too") {
  CheckpointKey key = pool_key(1);
  auto sealed = seal(checkpoint(), key);
  auto zero_generation = sealed;
  for (size_t i = 45; i < 53; ++i) zero_generation[i] = 0;
  CHECK(open_error(key, zero_generation) == CheckpointError::bad_field);
  CHECK_FALSE(migrate::seal_checkpoint(key, checkpoint(0)).has_value());
  Checkpoint other = checkpoint();
  other.snapshot.connection_id = connection + 1;  // inside and header disagree
  CHECK_FALSE(migrate::seal_checkpoint(key, other).has_value());
  Checkpoint too_big = checkpoint();
  too_big.snapshot.app_state.assign(migrate::max_sealed_checkpoint, 7);
  auto refused = migrate::seal_checkpoint(key, too_big);
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error() == CheckpointError::oversized);
}

TEST_CASE("an expired checkpoint or one from the future is refused") {
  CheckpointKey key = pool_key(1);
  auto sealed = seal(checkpoint(), key);
  CHECK(open_error(key, sealed, client_key(0xc1), connection, {now, 500, 60000}) == CheckpointError::expired);
  CHECK(open_error(key, sealed, client_key(0xc1), connection, {now - 70000, 0, 60000}) == CheckpointError::expired);
  CHECK(migrate::open_checkpoint(key, sealed, client_key(0xc1), connection, {now, 5000, 60000}).has_value());
}

TEST_CASE("the ledger refuses a replayed or older generation once a resume used a newer one") {
  CheckpointLedger ledger;
  Checkpoint c = checkpoint(5);
  CHECK(ledger.check(c.header).has_value());
  ledger.record(c.header);
  auto same = ledger.check(c.header);
  REQUIRE_FALSE(same.has_value());
  CHECK(same.error() == CheckpointError::replayed);
  auto older = ledger.check(checkpoint(4).header);
  REQUIRE_FALSE(older.has_value());
  CHECK(older.error() == CheckpointError::stale);
  CHECK(ledger.check(checkpoint(6).header).has_value());
  // Refusals change nothing; another connection of the same client is its own entry.
  CHECK(ledger.size() == 1);
  Checkpoint other = checkpoint(1);
  other.header.connection_id = connection + 1;
  CHECK(ledger.check(other.header).has_value());
  ledger.record(checkpoint(3).header);  // never lowers the mark
  CHECK(ledger.check(checkpoint(5).header).error() == CheckpointError::replayed);
}

TEST_CASE("checkpoint refusals are counted by reason") {
  CheckpointCounters counters;
  counters.count(CheckpointError::forged);
  counters.count(CheckpointError::forged);
  counters.count(CheckpointError::stale);
  CHECK(counters.refused[static_cast<size_t>(CheckpointError::forged)] == 2);
  CHECK(counters.refused_total() == 3);
  for (size_t i = 0; i < migrate::checkpoint_error_count; ++i)
    CHECK(std::string(migrate::checkpoint_error_name(static_cast<CheckpointError>(i))) != "unknown");
}
