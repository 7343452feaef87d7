// Owner proofs: both ends of a channel derive the same tag and key from its handshake
// hash; the MAC covers the client ISN and the server port, and nothing else verifies.
#include "crypto/owner_proof.hpp"

#include <doctest/doctest.h>

namespace {

using namespace roam::crypto;

std::array<uint8_t, 64> hash_of(uint8_t seed) {
  std::array<uint8_t, 64> h{};
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(seed + i * 7);
  return h;
}

}  // namespace

TEST_CASE("both ends of a channel derive the same tag and MAC; another channel different ones") {
  OwnerProofKey client(hash_of(1));
  OwnerProofKey server(hash_of(1));
  OwnerProofKey other(hash_of(2));
  CHECK(client.channel_tag() == server.channel_tag());
  CHECK(client.channel_tag() != other.channel_tag());
  auto mac = client.mac(0x12345678, 7000);
  CHECK(server.verify(0x12345678, 7000, mac));
  CHECK_FALSE(other.verify(0x12345678, 7000, mac));
}

TEST_CASE("an owner proof verifies only for its own ISN and server port") {
  OwnerProofKey key(hash_of(3));
  auto mac = key.mac(1000, 7000);
  CHECK(key.verify(1000, 7000, mac));
  CHECK_FALSE(key.verify(1001, 7000, mac));
  CHECK_FALSE(key.verify(1000, 7001, mac));
  for (size_t i = 0; i < mac.size(); ++i) {
    auto bad = mac;
    bad[i] ^= 1;
    CHECK_FALSE(key.verify(1000, 7000, bad));
  }
}

TEST_CASE("owner proof test vector (docs/PROTOCOL.md section 9)") {
  std::array<uint8_t, 64> h{};
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(i);
  OwnerProofKey key(h);
  const OwnerChannelTag tag = {0xe6, 0x14, 0x10, 0xfa, 0xfc, 0xc6, 0x92, 0x28};
  const OwnerProofMac mac = {0xe0, 0xc0, 0x88, 0x72, 0x9c, 0x16, 0xf8, 0x34};
  CHECK(key.channel_tag() == tag);
  CHECK(key.mac(0x01020304, 7000) == mac);
}
