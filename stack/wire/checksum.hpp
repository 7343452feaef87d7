// Internet checksum (RFC 1071) over byte spans, plus the IPv4/IPv6 pseudo-header sums.
// Pure functions: no allocation, no I/O; safe on any thread, called on every packet.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace roam::wire {

// Adds `bytes`, read as big-endian 16-bit words, to the ones-complement accumulator `acc`
// (start with 0). The returned accumulator is not yet folded: pass it to checksum_fold.
// An odd-length span is padded with one zero byte (RFC 1071 section 1), so only the
// last span of a multi-span sum may have an odd length.
uint32_t checksum_add(uint32_t acc, std::span<const uint8_t> bytes);

// Folds the carries of `acc` back into 16 bits and returns the ones complement: the value
// to store (big-endian) in a checksum field whose bytes were zero while summing. Summing
// a message that already carries a correct checksum folds to 0, which is how to verify.
uint16_t checksum_fold(uint32_t acc);

// Sum of the IPv4 pseudo header (RFC 793 section 3.1, RFC 768): source, destination,
// zero, protocol, and the transport length (TCP header + data, or the UDP length).
uint32_t pseudo_header_sum_v4(std::span<const uint8_t, 4> src, std::span<const uint8_t, 4> dst, uint8_t protocol,
                              uint16_t length);

// Sum of the IPv6 pseudo header (RFC 8200 section 8.1): source, destination, 32-bit
// upper-layer packet length, three zero bytes and the next header value.
uint32_t pseudo_header_sum_v6(std::span<const uint8_t, 16> src, std::span<const uint8_t, 16> dst, uint8_t next_header,
                              uint32_t length);

// Convenience: the checksum of one span, checksum_fold(checksum_add(0, bytes)).
inline uint16_t internet_checksum(std::span<const uint8_t> bytes) {
  return checksum_fold(checksum_add(0, bytes));
}

}  // namespace roam::wire
