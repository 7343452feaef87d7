// The owner-proof option of a carrier SYN (issue 11; crypto/owner_proof says what it
// proves): the client names its control channel to this server and proves it holds the
// channel's owner key. Pure functions over byte spans; any thread.
//
// Option layout (RFC 6994 shared experimental kind): 253 | 20 | ExID 0x524F ("RO") |
// 8-byte channel tag | 8-byte MAC. 20 bytes: with lwIP's SYN options (MSS 4, NOP + window
// scale 4) the header stays a whole number of 32-bit words. Only in a SYN without ACK; a
// receiver ignores it anywhere else.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "stack/wire/segment_mac_option.hpp"

namespace roam::wire {

inline constexpr uint16_t owner_proof_exid = 0x524F;
inline constexpr size_t owner_proof_tag_bytes = 8;
inline constexpr size_t owner_proof_mac_bytes = 8;
inline constexpr size_t owner_proof_option_bytes = 4 + owner_proof_tag_bytes + owner_proof_mac_bytes;

struct OwnerProofOption {
  std::array<uint8_t, owner_proof_tag_bytes> channel_tag{};
  std::array<uint8_t, owner_proof_mac_bytes> mac{};
  bool operator==(const OwnerProofOption&) const = default;
};

// Writes the option into `out` (at least owner_proof_option_bytes). Returns the bytes
// written, or 0 when `out` is too small.
size_t write_owner_proof_option(const OwnerProofOption& option, std::span<uint8_t> out);

// Walks the TCP options for ours: found (exactly once, exactly its length: `option` set),
// absent, or malformed (twice, a wrong length, or the option list is broken).
MacOptionLookup find_owner_proof_option(std::span<const uint8_t> options, OwnerProofOption& option);

}  // namespace roam::wire
