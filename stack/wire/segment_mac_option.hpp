// The per-segment MAC option (seed 003 section 3.4, in the spirit of TCP-AO, RFC 5925):
// where it sits in a TCP header and how a packet grows to carry it. Pure functions over
// byte spans; any thread. The MAC itself is computed in crypto/segment_mac.
//
// Option layout (RFC 6994 shared experimental kind): 253 | 16 | ExID 0x5253 ("RS") |
// 12-byte MAC. Its 16 bytes keep the TCP header a whole number of 32-bit words.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "stack/wire/ip_packet.hpp"
#include "stack/wire/tcp_header.hpp"

namespace roam::wire {

inline constexpr uint8_t tcp_option_experimental = 253;
inline constexpr uint16_t segment_mac_exid = 0x5253;
inline constexpr size_t segment_mac_bytes = 12;
inline constexpr size_t segment_mac_option_bytes = 16;

enum class MacOptionLookup : uint8_t { absent, found, malformed };

// Walks the TCP options for the RFC 6994 option with this experiment id; `data` is set
// to what follows the ExID when it is present exactly once (twice: malformed).
MacOptionLookup find_experimental_option(std::span<const uint8_t> options, uint16_t exid,
                                         std::span<const uint8_t>& data);

// Walks the TCP options; `mac` is set when our option is present (exactly once).
MacOptionLookup find_segment_mac(std::span<const uint8_t> options, std::array<uint8_t, segment_mac_bytes>& mac);

// Writes `packet` (validated: `info`, `tcp` describe it) to `out` with our option holding
// `mac` appended to its TCP options, the IP length, the IPv4 header checksum and the TCP
// checksum brought up to date. Returns the new length, or 0 when `out` is too small, the
// TCP header would exceed 60 bytes, or its options end early (End of Option List or a
// malformed option: a receiver would not read past it).
size_t append_segment_mac(std::span<const uint8_t> packet, const PacketInfo& info, const TcpSegmentView& tcp,
                          std::span<const uint8_t, segment_mac_bytes> mac, std::span<uint8_t> out);

}  // namespace roam::wire
