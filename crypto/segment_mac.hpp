// Per-segment MACs for carrier connections (seed 003 section 3.4; the idea of TCP-AO,
// RFC 5925, made to survive NAT): a key per connection, derived with keyed BLAKE2b from
// the control channel's handshake hash and the connection id, and a 12-byte tag over what
// a NAT leaves alone: direction, connection id, sequence and acknowledgement numbers,
// flags, window and payload (not addresses, ports or the checksum, which NATs rewrite).
//
// The tag is SipHash-2-4 with 128-bit output (libsodium's crypto_shorthash_siphashx24, a
// keyed PRF) truncated to 96 bits, as TCP-AO truncates its MACs: every carrier byte goes
// through it, and on this VM it runs at 2.96 GB/s against 0.54 GB/s for keyed BLAKE2b
// (tools/bench/README.md). A forger gets one try per packet, each with odds 2^-96.
// Not shared between threads (a per-object scratch buffer).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

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
  static constexpr size_t key_bytes = crypto_shorthash_siphashx24_KEYBYTES;

  // BLAKE2b-256 keyed with the channel's handshake hash over a label and the id.
  SegmentMacKey(std::span<const uint8_t, 64> handshake_hash, uint64_t connection_id);
  // The key another host derived (a connection that moved here with its snapshot).
  explicit SegmentMacKey(std::span<const uint8_t, key_bytes> key);
  // Copies the key out (into a buffer the caller wipes): to send it with a snapshot.
  void export_key(std::span<uint8_t, key_bytes> out) const;
  SegmentMacTag tag(const SegmentFields& fields) const;
  // Constant-time comparison with the tag a segment carried.
  bool verify(const SegmentFields& fields, std::span<const uint8_t, segment_mac_tag_bytes> carried) const;

 private:
  SecretBytes<crypto_shorthash_siphashx24_KEYBYTES> key_;
  mutable std::vector<uint8_t> scratch_;  // the fields and the payload in one piece
};

}  // namespace roam::crypto
