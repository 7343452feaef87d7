// Per-segment MACs for carrier connections (seed 003 section 3.4; the idea of TCP-AO,
// RFC 5925, made to survive NAT): a key per connection, derived from the control
// channel's handshake hash and the connection id, and a 12-byte keyed BLAKE2b tag over
// what a NAT leaves alone: direction, connection id, sequence and acknowledgement numbers,
// flags, window and payload (not addresses, ports or the checksum, which NATs rewrite).
// Any thread (after ensure_sodium()).
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "crypto/sodium.hpp"

namespace roam::crypto {

inline constexpr size_t segment_mac_tag_bytes = 12;
using SegmentMacTag = std::array<uint8_t, segment_mac_tag_bytes>;

// Which end sent the segment: the same key signs both directions, so the direction is
// part of what is signed (a segment cannot be reflected back to its sender).
enum class SegmentDirection : uint8_t { client_to_server = 0, server_to_client = 1 };

struct SegmentFields {
  SegmentDirection direction;
  uint64_t connection_id;
  uint32_t seq;
  uint32_t ack;
  uint8_t flags;
  uint16_t window;
  std::span<const uint8_t> payload;
};

class SegmentMacKey {
 public:
  // BLAKE2b-256 keyed with the channel's handshake hash over a label and the id.
  SegmentMacKey(std::span<const uint8_t, 64> handshake_hash, uint64_t connection_id);
  SegmentMacTag tag(const SegmentFields& fields) const;
  // Constant-time comparison with the tag a segment carried.
  bool verify(const SegmentFields& fields, std::span<const uint8_t, segment_mac_tag_bytes> carried) const;

 private:
  SecretBytes<32> key_;
};

}  // namespace roam::crypto
