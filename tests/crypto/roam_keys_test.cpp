// Per-purpose derivations from one chain key: fixed vectors (PROTOCOL.md 13.2, computed
// with Python's hashlib from the text) and the shape of the server index.
#include "crypto/roam_keys.hpp"

#include <doctest/doctest.h>

#include <array>

namespace {

using namespace roam::crypto;

ChainKey seed_key() {
  ChainKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i + 1);
  return k;
}

}  // namespace

TEST_CASE("roam keys: the published vector for K_1 .. K_8 of the seed 01..20 chain") {
  HashChain chain(seed_key(), 8);
  const std::array<uint32_t, 8> bits3{6, 1, 7, 2, 3, 0, 2, 1};
  const std::array<uint32_t, 8> server3{2, 0, 2, 1, 1, 2, 2, 0};
  const std::array<uint32_t, 8> server4{3, 0, 3, 2, 2, 3, 3, 0};
  const std::array<uint16_t, 8> ports{17947, 17586, 63983, 61396, 18725, 64034, 36072, 56862};
  for (uint64_t i = 1; i <= 8; ++i) {
    ChainKey k = chain.key(i);
    CAPTURE(i);
    CHECK(epoch_length_bits(k, 3) == bits3[i - 1]);
    CHECK(server_index(k, 3) == server3[i - 1]);
    CHECK(server_index(k, 4) == server4[i - 1]);
    CHECK(port_selector(k) == ports[i - 1]);
    CHECK(epoch_length_bits(k, 0) == 0);
    CHECK(server_index(k, 1) == 0);
    // MSB_m: fewer bits are a prefix of more bits.
    CHECK(epoch_length_bits(k, 2) == bits3[i - 1] >> 1);
    CHECK((epoch_length_bits(k, 24) >> 21) == bits3[i - 1]);
    // N = 2^b: the index is MSB_b, so halving N halves the index.
    CHECK(server_index(k, 2) == server4[i - 1] >> 1);
  }
}

TEST_CASE("roam keys: the server index covers every member about evenly") {
  std::array<int, 5> hits{};
  ChainKey k = seed_key();
  for (int i = 0; i < 5000; ++i) {
    k = chain_step(k);
    uint32_t index = server_index(k, 5);
    REQUIRE(index < 5);
    ++hits[index];
  }
  for (int h : hits) CHECK(h > 800);  // expected 1000 each; 800 is > 6 sigma below
}
