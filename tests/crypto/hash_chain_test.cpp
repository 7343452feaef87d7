// The backward hash chain: checkpointed keys equal the naive chain, memory stays
// O(sqrt n), and only keys of the same chain verify (PROTOCOL.md 13.1 vector).
#include "crypto/hash_chain.hpp"

#include <doctest/doctest.h>

#include <stdexcept>

#include <string>
#include <vector>

namespace {

using namespace roam::crypto;

ChainKey seed_key() {
  ChainKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i + 1);
  return k;
}

std::string hex(const ChainKey& k) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (uint8_t b : k) {
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

// Every key K_top .. K_bottom by plain hashing, indexed by i - bottom.
std::vector<ChainKey> naive(const ChainKey& top_key, uint64_t top, uint64_t bottom) {
  std::vector<ChainKey> keys(top - bottom + 1);
  keys[top - bottom] = top_key;
  for (uint64_t i = top; i > bottom; --i) keys[i - 1 - bottom] = chain_step(keys[i - bottom]);
  return keys;
}

}  // namespace

TEST_CASE("hash chain: the published vector (seed 01..20, n = 8)") {
  HashChain chain(seed_key(), 8);
  CHECK(hex(chain.key(8)) == "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20");
  CHECK(hex(chain.key(7)) == "33d0432e638f8ef34efb20f47f056afafb125d0307df8e47623e268a37bc7642");
  CHECK(hex(chain.key(1)) == "c077111557aca398b15977b3b96589bab92bab01e7cee2bc3fe00ffc4c8c1df9");
  CHECK(hex(chain.key(0)) == "dbd393b07b0da553088a921f517cd5e86312e08daf9c07b3acb57f11e293c48b");
}

TEST_CASE("hash chain: every checkpointed key equals the naive chain, for many lengths and bottoms") {
  for (uint64_t length : {0u, 1u, 2u, 3u, 4u, 5u, 15u, 16u, 17u, 100u, 1000u}) {
    for (uint64_t bottom : {0u, 1u, 7u}) {
      uint64_t top = bottom + length;
      ChainKey top_key = chain_step(seed_key());
      HashChain chain(top_key, top, bottom);
      auto expected = naive(top_key, top, bottom);
      CHECK(chain.bottom() == bottom);
      CHECK(chain.top() == top);
      CHECK_FALSE(chain.holds(top + 1));
      CHECK(chain.holds(bottom) == true);
      if (bottom > 0) CHECK_FALSE(chain.holds(bottom - 1));
      for (uint64_t i = bottom; i <= top; ++i) REQUIRE(chain.key(i) == expected[i - bottom]);
      auto all = chain.keys(bottom, top);
      CHECK(all == expected);
      if (length >= 3) CHECK(chain.keys(bottom + 1, top - 1) == std::vector<ChainKey>(expected.begin() + 1, expected.end() - 1));
    }
  }
}

TEST_CASE("hash chain: 2^16 keys stored in O(sqrt n), any key within sqrt n hashes of a checkpoint") {
  const uint64_t n = uint64_t{1} << 16;
  HashChain chain(seed_key(), n);
  CHECK(chain.interval() == 256);
  CHECK(chain.stored_keys() == 257);  // K_0, K_256, ..., K_65280, K_65536
  // A random-looking sample against plain hashing from the top.
  for (uint64_t i : {uint64_t{0}, uint64_t{1}, uint64_t{255}, uint64_t{256}, uint64_t{257}, n - 300, n - 1, n})
    CHECK(chain.key(i) == chain_hash_down(seed_key(), n - i));
}

TEST_CASE("hash chain: a generated chain is random and self-consistent") {
  HashChain a = HashChain::generate(50);
  HashChain b = HashChain::generate(50);
  CHECK(a.key(50) != b.key(50));
  CHECK(chain_step(a.key(20)) == a.key(19));
  HashChain moved = std::move(a);
  CHECK(chain_step(moved.key(50)) == moved.key(49));
}

TEST_CASE("hash chain: bad ranges are refused") {
  CHECK_THROWS_AS(HashChain(seed_key(), 3, 4), std::invalid_argument);
  CHECK_THROWS_AS(HashChain(seed_key(), HashChain::max_range + 1, 0), std::invalid_argument);
  HashChain chain(seed_key(), 10, 2);
  CHECK_THROWS_AS(chain.key(1), std::out_of_range);
  CHECK_THROWS_AS(chain.key(11), std::out_of_range);
}

TEST_CASE("verify_chain_key: a newer key verifies to an older trusted one; forged, older and too-far keys do not") {
  HashChain chain(seed_key(), 100);
  ChainKey trusted = chain.key(10);
  CHECK(verify_chain_key(chain.key(10), 10, trusted, 10, 1000) == ChainCheck::valid);
  CHECK(verify_chain_key(chain.key(11), 11, trusted, 10, 1000) == ChainCheck::valid);
  CHECK(verify_chain_key(chain.key(100), 100, trusted, 10, 1000) == ChainCheck::valid);
  // Right key, wrong claimed index; other chain; flipped bit.
  CHECK(verify_chain_key(chain.key(50), 51, trusted, 10, 1000) == ChainCheck::forged);
  CHECK(verify_chain_key(HashChain::generate(100).key(50), 50, trusted, 10, 1000) == ChainCheck::forged);
  for (size_t byte : {size_t{0}, size_t{17}, size_t{31}}) {
    ChainKey bad = chain.key(60);
    bad[byte] ^= 0x80;
    CHECK(verify_chain_key(bad, 60, trusted, 10, 1000) == ChainCheck::forged);
  }
  CHECK(verify_chain_key(chain.key(5), 5, trusted, 10, 1000) == ChainCheck::older);
  CHECK(verify_chain_key(chain.key(100), 100, trusted, 10, 89) == ChainCheck::too_far);
  CHECK(verify_chain_key(chain.key(99), 99, trusted, 10, 89) == ChainCheck::valid);
  CHECK(std::string(chain_check_name(ChainCheck::forged)) == "forged");
}
