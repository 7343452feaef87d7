// The options of a SYN that a listener negotiates (RFC 9293 3.1, RFC 7323, RFC 2018): MSS,
// window scale, SACK-permitted, timestamps; and the options block of a SYN-ACK built from
// them. Pure functions over byte spans; any thread. Read from network input: malformed
// options end the walk (what was read before stays), never read out of range.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace roam::wire {

struct SynOptions {
  std::optional<uint16_t> mss;          // kind 2
  std::optional<uint8_t> window_scale;  // kind 3, as sent (a receiver clamps to 14)
  bool sack_permitted = false;          // kind 4
  std::optional<uint32_t> timestamp;    // kind 8: the sender's TSval
};

// Reads the options block of a SYN. An option whose length is wrong or runs past the
// block stops the walk, as lwIP's tcp_parseopt does.
SynOptions parse_syn_options(std::span<const uint8_t> options);

// The options of a SYN-ACK: MSS, then (when `window_scale` is set) NOP + window scale.
// Returns the bytes written to `out` (4 or 8; 0 when `out` is shorter than 8).
size_t write_synack_options(std::span<uint8_t> out, uint16_t mss, std::optional<uint8_t> window_scale);
inline constexpr size_t synack_options_max = 8;

}  // namespace roam::wire
