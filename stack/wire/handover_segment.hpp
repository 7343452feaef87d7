// The NAT handover's synthetic segments (DESIGN.md section 4; seed 000 section 3): the
// client's SYN toward the new server, the new server's SYN-ACK, and the window update
// that follows it. Pure builders and a parser over byte spans; any thread. The tags come
// from crypto/handover_mac.
//
// Option (RFC 6994 shared experimental kind, 28 bytes):
//   253 | 28 | ExID 0x5248 ("RH") | u64 connection id | u32 sender's rcv_nxt | 12-byte tag
// A window update (an ACK without payload) carries only the option.
// A SYN or SYN-ACK carries, in this order: MSS (4), NOP + window scale (4), the option
// (28): 36 bytes, so a NAT or firewall that reads options sees a well-formed handshake
// with the connection's real MSS and window scale (Linux conntrack learns the scale from
// it, and windows are checked with it afterwards).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "stack/wire/ip_packet.hpp"
#include "base/ip_address.hpp"
#include "stack/wire/segment_mac_option.hpp"

namespace roam::wire {

inline constexpr uint16_t handover_exid = 0x5248;
inline constexpr size_t handover_tag_bytes = 12;
inline constexpr size_t handover_option_bytes = 28;
// The largest packet the builders write (IPv6 header + TCP header with 36 option bytes).
inline constexpr size_t handover_packet_max_bytes = 40 + 20 + 36;

struct HandoverOption {
  uint64_t connection_id = 0;
  uint32_t rcv_nxt = 0;  // the sender's next expected sequence number
  std::array<uint8_t, handover_tag_bytes> tag{};
  bool operator==(const HandoverOption&) const = default;
};

// A look at a validated TCP packet without parsing it, for the input filters that every
// carrier segment passes: its flags, and whether its TCP header has room for our option
// (a carrier segment has none, or a 16-byte segment MAC). nullopt when not TCP.
struct TcpGlance {
  uint8_t flags = 0;
  bool room_for_handover_option = false;
};
std::optional<TcpGlance> glance_tcp(std::span<const uint8_t> packet, const PacketInfo& info);

// Finds our option among TCP options (absent, found exactly once and 28 bytes long, or
// malformed).
MacOptionLookup find_handover_option(std::span<const uint8_t> options, HandoverOption& out);

struct HandoverSegment {
  IpAddress src;  // both of the same family
  IpAddress dst;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;      // SYN-ACK only
  bool syn_ack = false;  // false: SYN
  uint16_t window = 0;   // as on the wire (never scaled in a SYN)
  uint16_t mss = 536;
  uint8_t window_scale = 0;
  HandoverOption option;
};

// Writes the SYN or SYN-ACK with valid IP and TCP checksums; returns its length, or 0
// when `out` is too small or the addresses are of different families.
size_t build_handover_segment(std::span<uint8_t> out, const HandoverSegment& segment);

// The window update each end sends right after the handshake (the NAT learned only the
// unscaled windows of the SYN and SYN-ACK): an ACK with no payload, carrying our option so
// that the other end recognises it and never hands it to lwIP.
struct BareAck {
  IpAddress src;
  IpAddress dst;
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint16_t window = 0;  // as on the wire (scaled by the sender's window scale)
  HandoverOption option;
};
size_t build_bare_ack(std::span<uint8_t> out, const BareAck& segment);

}  // namespace roam::wire
