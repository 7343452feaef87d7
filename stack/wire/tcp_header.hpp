// Checked read-only view of the TCP segment in a validated IP packet, and a pure IPv4+TCP builder.
// Pure functions over byte spans: no allocation, no logging; safe on any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "stack/wire/ip_packet.hpp"
#include "base/result.hpp"

namespace roam::wire {

// The TCP header fields of one segment (RFC 9293 section 3.1). `options` and `payload`
// point into the packet passed to parse_tcp_segment and live as long as it does.
struct TcpSegmentView {
  static constexpr uint8_t FIN = 0x01;
  static constexpr uint8_t SYN = 0x02;
  static constexpr uint8_t RST = 0x04;
  static constexpr uint8_t PSH = 0x08;
  static constexpr uint8_t ACK = 0x10;
  static constexpr uint8_t URG = 0x20;
  static constexpr uint8_t ECE = 0x40;  // RFC 3168
  static constexpr uint8_t CWR = 0x80;  // RFC 3168

  uint8_t version;                      // 4 or 6
  std::array<uint8_t, 16> src_address;  // IPv4 uses the first 4 bytes, the rest are zero
  std::array<uint8_t, 16> dst_address;
  uint16_t src_port;
  uint16_t dst_port;
  uint32_t seq;
  uint32_t ack;
  uint8_t flags;                     // the FIN..CWR bits above
  uint16_t window;                   // unscaled, as on the wire
  uint8_t header_length;             // bytes, 20..60
  std::span<const uint8_t> options;  // header_length - 20 bytes
  std::span<const uint8_t> payload;  // up to the IP total length

  size_t address_size() const { return version == 4 ? 4 : 16; }
  bool has(uint8_t flag_bits) const { return (flags & flag_bits) == flag_bits; }
};

// Reads the TCP header of `packet`, which check_ip_packet accepted and described as
// `info`. Bounds are re-checked against `info` (a mismatched pair returns an error, never
// reads out of range); checksums are not re-verified.
Result<TcpSegmentView, PacketError> parse_tcp_segment(std::span<const uint8_t> packet, const PacketInfo& info);

// Fields for build_ipv4_tcp (N = 4) and build_ipv6_tcp (N = 16). The IPv4 header has no
// options and DF set; with DF the identification may be any value (RFC 6864 section
// 4.1), 0 by default. The IPv6 header has no extension headers and flow label 0; `ttl` is
// its hop limit and `identification` is not used.
template <size_t N>
struct IpTcpFields {
  std::array<uint8_t, N> src{};
  std::array<uint8_t, N> dst{};
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  uint8_t ttl = 64;
  uint16_t identification = 0;
  std::span<const uint8_t> options{};  // TCP options, at most 40 bytes; zero-padded to 4
};
using Ipv4TcpFields = IpTcpFields<4>;
using Ipv6TcpFields = IpTcpFields<16>;

// Largest TCP options block (data offset 15 words minus the 5-word fixed header).
inline constexpr size_t tcp_options_max = 40;

// Bytes build_ipv4_tcp will write for these sizes (0 if options exceed 40 bytes or the
// packet exceeds 65535 bytes).
size_t ipv4_tcp_packet_size(size_t options_size, size_t payload_size);

// Writes a complete IPv4+TCP packet with correct IP and TCP checksums to the front of
// `out` and returns its length; returns 0 (writing nothing) if `out` is too small, the
// options exceed 40 bytes, or the packet would exceed 65535 bytes.
size_t build_ipv4_tcp(std::span<uint8_t> out, const Ipv4TcpFields& fields, std::span<const uint8_t> payload);

// The same as build_ipv4_tcp for IPv6 (the TCP checksum over the IPv6 pseudo-header).
size_t build_ipv6_tcp(std::span<uint8_t> out, const Ipv6TcpFields& fields, std::span<const uint8_t> payload);

}  // namespace roam::wire
