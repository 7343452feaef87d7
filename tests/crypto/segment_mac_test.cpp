// Per-segment MAC keys and tags: both ends derive the same key from the same handshake
// hash and id; every signed field, the direction and the payload change the tag; another
// session or another connection id gives another key.
#include "crypto/segment_mac.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

using namespace roam::crypto;

std::array<uint8_t, 64> hash_of(uint8_t seed) {
  std::array<uint8_t, 64> h{};
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(seed + i);
  return h;
}

TEST_CASE("tags depend on every signed field, the direction, the key and the id") {
  std::vector<uint8_t> payload = {1, 2, 3, 4, 5};
  SegmentFields base{SegmentDirection::client_to_server, 42, 1000, 2000, 0x18, 512, payload};
  SegmentMacKey key(hash_of(1), 42), same(hash_of(1), 42), other_session(hash_of(2), 42), other_id(hash_of(1), 43);
  auto tag = key.tag(base);
  CHECK(same.tag(base) == tag);
  CHECK(key.verify(base, tag));
  CHECK(other_session.tag(base) != tag);
  CHECK(other_id.tag(base) != tag);
  auto changed = [&](auto edit) {
    SegmentFields f = base;
    std::vector<uint8_t> p = payload;
    f.payload = p;
    edit(f, p);
    return key.tag(f) != tag && !key.verify(f, tag);
  };
  CHECK(changed([](SegmentFields& f, auto&) { f.direction = SegmentDirection::server_to_client; }));
  CHECK(changed([](SegmentFields& f, auto&) { f.connection_id = 43; }));
  CHECK(changed([](SegmentFields& f, auto&) { f.seq += 1; }));
  CHECK(changed([](SegmentFields& f, auto&) { f.ack += 1; }));
  CHECK(changed([](SegmentFields& f, auto&) { f.flags ^= 0x01; }));
  CHECK(changed([](SegmentFields& f, auto&) { f.window += 1; }));
  CHECK(changed([](SegmentFields&, std::vector<uint8_t>& p) { p[2] ^= 0x80; }));
  CHECK(changed([](SegmentFields& f, std::vector<uint8_t>& p) { f.payload = std::span(p).first(4); }));
  auto flipped = tag;
  flipped[11] ^= 1;
  CHECK_FALSE(key.verify(base, flipped));
}

}  // namespace
