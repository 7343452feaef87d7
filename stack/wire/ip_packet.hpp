// Validation of one raw IPv4/IPv6 packet read from a link, before it reaches lwIP or any state.
// Pure functions over a byte span: no allocation, no logging; safe on any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "base/result.hpp"

namespace roam::wire {

// Why a packet was dropped; callers keep one counter per value (packet_error_count).
enum class PacketError : uint8_t {
  too_short,               // shorter than the fixed IPv4 (20) or IPv6 (40) header
  bad_version,             // version nibble is neither 4 nor 6
  bad_header_length,       // IPv4 IHL < 5
  bad_total_length,        // IP length exceeds the buffer or is below the header size
  bad_ip_checksum,         // IPv4 header checksum
  fragment,                // IPv4 MF set or fragment offset != 0 (we do not reassemble)
  unknown_protocol,        // not TCP/UDP/ICMP (v4) or TCP/UDP/ICMPv6 (v6); v6 extension headers
  bad_transport_header,    // TCP/UDP/ICMP header truncated or inconsistent with the IP length
  bad_transport_checksum,  // TCP/UDP/ICMP checksum (UDP over IPv6 must have one)
};
inline constexpr size_t packet_error_count = 9;

std::string_view to_string(PacketError error);

inline constexpr uint8_t ip_protocol_icmp = 1;
inline constexpr uint8_t ip_protocol_tcp = 6;
inline constexpr uint8_t ip_protocol_udp = 17;
inline constexpr uint8_t ip_protocol_icmpv6 = 58;

inline constexpr size_t ipv4_header_min = 20;
inline constexpr size_t ipv6_header_size = 40;
inline constexpr size_t tcp_header_min = 20;
inline constexpr size_t udp_header_size = 8;
inline constexpr size_t icmp_header_min = 8;

struct PacketInfo {
  uint8_t version;            // 4 or 6
  uint8_t protocol;           // IPv4 protocol or IPv6 next header: 1, 6, 17 or 58
  uint16_t length;            // IP total length (<= buffer size; trailing bytes beyond it are ignored)
  uint16_t transport_offset;  // where the TCP/UDP/ICMP header starts (IPv4 IHL * 4, or 40)
};

// Checks everything a receiver must check before trusting the headers: sizes, version,
// lengths, IPv4 header checksum, no fragments, a supported transport, that transport's
// minimum header and its checksum. On success every header byte up to `length` is valid
// to read. IPv6 packets longer than 65535 bytes in total are rejected (bad_total_length).
Result<PacketInfo, PacketError> check_ip_packet(std::span<const uint8_t> packet);

// The PacketInfo of a TCP packet whose checksums need no summing: one this host's own
// stack built (lwIP: no fragments, no IPv6 extension headers; the output path runs this
// per segment), or one only peeked at for a hint (defense::peek_syn). Lengths, protocol
// and "not a fragment" are checked. nullopt for anything else.
std::optional<PacketInfo> describe_own_tcp_packet(std::span<const uint8_t> packet);

}  // namespace roam::wire
