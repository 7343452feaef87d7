// Tests for stack/wire/checksum: RFC 1071 vectors, a byte-by-byte reference, pseudo headers.
#include "stack/wire/checksum.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string_view>
#include <vector>

namespace {

using roam::wire::checksum_add;
using roam::wire::checksum_fold;
using roam::wire::internet_checksum;

std::vector<uint8_t> from_hex(std::string_view hex) {
  std::vector<uint8_t> out;
  auto nibble = [](char c) { return static_cast<uint8_t>(c <= '9' ? c - '0' : c - 'a' + 10); };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>((nibble(hex[i]) << 4) | nibble(hex[i + 1])));
  }
  return out;
}

// Straight from RFC 1071 section 4.1, one 16-bit word at a time.
uint16_t reference_checksum(const std::vector<uint8_t>& bytes) {
  uint64_t sum = 0;
  for (size_t i = 0; i < bytes.size(); i += 2) {
    const uint32_t high = bytes[i];
    const uint32_t low = i + 1 < bytes.size() ? bytes[i + 1] : 0;
    sum += (high << 8) | low;
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Real packets written by Linux into a TUN device (full checksums, no offload).
constexpr std::string_view ipv4_tcp_syn_hex =
    "4500003c8f314000400697760a0900010a090002c2141f9035bd3c3200000000a002faf019d10000"
    "020405b40402080ad5cef5c3000000000103030a";
constexpr std::string_view ipv6_tcp_syn_hex =
    "600c420700280640fd000009000000000000000000000001fd000009000000000000000000000002"
    "cd0c01bb3cdf8c4f00000000a002fd20d41b0000020405a00402080a81a26325000000000103030a";

}  // namespace

TEST_CASE("checksum matches the RFC 1071 section 3 example") {
  // Bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2, so the checksum is ~0xddf2.
  const std::vector<uint8_t> bytes = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  CHECK(checksum_fold(checksum_add(0, bytes)) == 0x220d);
  CHECK(internet_checksum(bytes) == 0x220d);
  CHECK(reference_checksum(bytes) == 0x220d);
}

TEST_CASE("checksum of an empty span is all ones") {
  CHECK(internet_checksum({}) == 0xffff);
  CHECK(checksum_add(1234, {}) == 1234);
}

TEST_CASE("odd length pads the last byte as the high byte of a word") {
  const std::vector<uint8_t> one = {0x01};
  CHECK(internet_checksum(one) == 0xfeff);
  const std::vector<uint8_t> three = {0x12, 0x34, 0x56};
  CHECK(internet_checksum(three) == static_cast<uint16_t>(~(0x1234 + 0x5600)));
}

TEST_CASE("checksum equals a word-by-word reference for every length and alignment") {
  std::mt19937 rng(1071);
  std::vector<uint8_t> storage(600);
  for (auto& b : storage) b = static_cast<uint8_t>(rng());
  for (size_t offset = 0; offset < 8; ++offset) {
    for (size_t length = 0; length <= 300; ++length) {
      const std::span<const uint8_t> view(storage.data() + offset, length);
      const std::vector<uint8_t> copy(view.begin(), view.end());
      const uint16_t expected = reference_checksum(copy);
      if (internet_checksum(view) != expected) {
        FAIL("mismatch at offset " << offset << " length " << length);
      }
    }
  }
  CHECK(true);
}

TEST_CASE("checksum of large all-ones buffers does not lose carries") {
  // 0xff bytes maximise carries in every lane; 65535 is odd as well.
  for (size_t length : {65535u, 65536u, 1500u, 33u}) {
    const std::vector<uint8_t> bytes(length, 0xff);
    CHECK(internet_checksum(bytes) == reference_checksum(bytes));
  }
  std::mt19937 rng(7);
  std::vector<uint8_t> random(65536);
  for (auto& b : random) b = static_cast<uint8_t>(rng());
  CHECK(internet_checksum(random) == reference_checksum(random));
}

TEST_CASE("sums over even-length pieces compose") {
  std::mt19937 rng(3);
  std::vector<uint8_t> bytes(101);
  for (auto& b : bytes) b = static_cast<uint8_t>(rng());
  const std::span<const uint8_t> all(bytes);
  for (size_t split = 0; split <= bytes.size(); split += 2) {
    const uint32_t acc = checksum_add(checksum_add(0, all.first(split)), all.subspan(split));
    CHECK(checksum_fold(acc) == internet_checksum(all));
  }
}

TEST_CASE("a large starting accumulator wraps its carry") {
  const std::vector<uint8_t> bytes = {0x12, 0x34, 0xab, 0xcd};
  // 0xffffffff is ones-complement zero (0xffff + 0xffff folds to 0xffff).
  CHECK(checksum_fold(checksum_add(0xffffffffu, bytes)) == internet_checksum(bytes));
  CHECK(checksum_fold(checksum_add(0x00010000u, bytes)) == checksum_fold(checksum_add(0x00000001u, bytes)));
}

TEST_CASE("data carrying its own checksum sums to zero") {
  std::vector<uint8_t> bytes = {0x45, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x00, 0x00, 0x40, 0x11};
  const uint16_t sum = internet_checksum(bytes);
  bytes.push_back(static_cast<uint8_t>(sum >> 8));
  bytes.push_back(static_cast<uint8_t>(sum));
  CHECK(internet_checksum(bytes) == 0);
}

TEST_CASE("IPv4 pseudo header verifies a captured TCP SYN") {
  const auto packet = from_hex(ipv4_tcp_syn_hex);
  const std::span<const uint8_t> bytes(packet);
  const auto tcp = bytes.subspan(20);
  const uint32_t pseudo = roam::wire::pseudo_header_sum_v4(bytes.subspan<12, 4>(), bytes.subspan<16, 4>(), 6,
                                                           static_cast<uint16_t>(tcp.size()));
  CHECK(checksum_fold(checksum_add(pseudo, tcp)) == 0);

  // Same result from the pseudo header laid out as bytes (RFC 793 section 3.1).
  std::vector<uint8_t> laid_out(bytes.begin() + 12, bytes.begin() + 20);
  laid_out.insert(laid_out.end(), {0, 6, 0, static_cast<uint8_t>(tcp.size())});
  laid_out.insert(laid_out.end(), tcp.begin(), tcp.end());
  CHECK(reference_checksum(laid_out) == 0);
  CHECK(checksum_fold(pseudo) == reference_checksum(std::vector<uint8_t>(laid_out.begin(), laid_out.begin() + 12)));
}

TEST_CASE("IPv6 pseudo header verifies a captured TCP SYN") {
  const auto packet = from_hex(ipv6_tcp_syn_hex);
  const std::span<const uint8_t> bytes(packet);
  const auto tcp = bytes.subspan(40);
  const uint32_t pseudo = roam::wire::pseudo_header_sum_v6(bytes.subspan<8, 16>(), bytes.subspan<24, 16>(), 6,
                                                           static_cast<uint32_t>(tcp.size()));
  CHECK(checksum_fold(checksum_add(pseudo, tcp)) == 0);

  // RFC 8200 section 8.1 layout, including a length above 16 bits.
  std::vector<uint8_t> laid_out(bytes.begin() + 8, bytes.begin() + 40);
  laid_out.insert(laid_out.end(), {0x00, 0x01, 0x23, 0x45, 0, 0, 0, 6});
  const uint32_t big = roam::wire::pseudo_header_sum_v6(bytes.subspan<8, 16>(), bytes.subspan<24, 16>(), 6, 0x00012345);
  CHECK(checksum_fold(big) == reference_checksum(laid_out));
}
