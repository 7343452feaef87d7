#include "stack/wire/checksum.hpp"

#include <bit>
#include <cstring>

namespace roam::wire {
namespace {

// Ones-complement addition in 64 bits: the carry out of bit 63 wraps around to bit 0.
// Because 2^16 = 1 (mod 0xffff), any word width gives the same residue once folded, and
// the sum is independent of byte order (RFC 1071 section 2, properties A and B).
inline uint64_t add_carry(uint64_t sum, uint64_t word) {
  sum += word;
  return sum + (sum < word ? 1 : 0);
}

inline uint64_t load64(const uint8_t* p) {
  uint64_t word;
  std::memcpy(&word, p, sizeof word);  // unaligned-safe; compiles to one load
  return word;
}

// Folds a 64-bit ones-complement sum to 16 bits (still in native byte order).
inline uint16_t fold64_to_16(uint64_t sum) {
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffffffu) + (sum >> 32);
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  sum = (sum & 0xffffu) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

}  // namespace

uint32_t checksum_add(uint32_t acc, std::span<const uint8_t> bytes) {
  const uint8_t* p = bytes.data();
  size_t n = bytes.size();
  uint64_t sum = 0;

  // Four independent 64-bit lanes hide the carry dependency chain.
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  while (n >= 32) {
    s0 = add_carry(s0, load64(p));
    s1 = add_carry(s1, load64(p + 8));
    s2 = add_carry(s2, load64(p + 16));
    s3 = add_carry(s3, load64(p + 24));
    p += 32;
    n -= 32;
  }
  sum = add_carry(add_carry(s0, s1), add_carry(s2, s3));
  while (n >= 8) {
    sum = add_carry(sum, load64(p));
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    // Zero padding at the end of the byte stream does not change the sum, and for an odd
    // length it is exactly the RFC 1071 padding byte.
    uint8_t tail[8] = {};
    std::memcpy(tail, p, n);
    sum = add_carry(sum, load64(tail));
  }

  uint16_t folded = fold64_to_16(sum);
  if constexpr (std::endian::native == std::endian::little) {
    folded = static_cast<uint16_t>((folded << 8) | (folded >> 8));
  }
  uint64_t total = uint64_t{acc} + folded;
  total = (total & 0xffffffffu) + (total >> 32);
  return static_cast<uint32_t>(total);
}

uint16_t checksum_fold(uint32_t acc) {
  return static_cast<uint16_t>(~fold64_to_16(acc));
}

uint32_t pseudo_header_sum_v4(std::span<const uint8_t, 4> src, std::span<const uint8_t, 4> dst, uint8_t protocol,
                              uint16_t length) {
  uint32_t acc = checksum_add(0, src);
  acc = checksum_add(acc, dst);
  // The zero byte and the protocol form one big-endian word.
  return acc + protocol + length;
}

uint32_t pseudo_header_sum_v6(std::span<const uint8_t, 16> src, std::span<const uint8_t, 16> dst, uint8_t next_header,
                              uint32_t length) {
  uint32_t acc = checksum_add(0, src);
  acc = checksum_add(acc, dst);
  return acc + (length >> 16) + (length & 0xffffu) + next_header;
}

}  // namespace roam::wire
