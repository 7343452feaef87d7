// The virtio_net_hdr that a Linux TUN device opened with IFF_VNET_HDR puts before every
// packet (include/uapi/linux/virtio_net.h, legacy 10-byte layout): parse and emit, finish
// a partial transport checksum the kernel left for us, and plan the header of a TCP packet
// we hand to the kernel for segmentation (TSO) and checksumming. Pure functions over byte
// spans: no allocation, no logging; safe on any thread, called on every packet.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "base/result.hpp"

namespace roam::wire {

// A TUN device uses the host's byte order for these fields unless told otherwise
// (TUNSETVNETLE/BE); every host Roamstack builds for is little-endian, and the codec below
// reads and writes little-endian explicitly so its tests mean the same everywhere.
static_assert(std::endian::native == std::endian::little, "virtio_net_hdr codec assumes a little-endian host");

inline constexpr size_t virtio_net_header_size = 10;
inline constexpr uint8_t virtio_net_flag_needs_csum = 1;  // checksum from csum_start, stored at +csum_offset
inline constexpr uint8_t virtio_net_flag_data_valid = 2;  // the sender already verified the checksum
inline constexpr uint8_t virtio_net_gso_none = 0;
inline constexpr uint8_t virtio_net_gso_tcpv4 = 1;
inline constexpr uint8_t virtio_net_gso_udp = 3;
inline constexpr uint8_t virtio_net_gso_tcpv6 = 4;
inline constexpr uint8_t virtio_net_gso_udp_l4 = 5;
inline constexpr uint8_t virtio_net_gso_ecn = 0x80;

struct VirtioNetHeader {
  uint8_t flags = 0;
  uint8_t gso_type = 0;
  uint16_t hdr_len = 0;      // bytes of IP + transport headers in each segment
  uint16_t gso_size = 0;     // payload bytes per segment (the MSS for TCP)
  uint16_t csum_start = 0;   // where checksumming starts (the transport header)
  uint16_t csum_offset = 0;  // where, from csum_start, the checksum is stored (16 for TCP)

  bool operator==(const VirtioNetHeader&) const = default;
};

enum class VirtioNetError : uint8_t {
  too_short,           // fewer than virtio_net_header_size bytes
  bad_flags,           // a flag or GSO type we never enable
  bad_checksum_range,  // csum_start/csum_offset point outside the packet
  not_ip,              // (planning) not an IPv4/IPv6 packet we can describe
  bad_tcp_header,      // (planning) TCP header truncated or inconsistent
  bad_mss,             // (planning) a packet needing segmentation with MSS 0
};
std::string_view to_string(VirtioNetError error);

// Reads the header at the front of `bytes` (the packet follows it). Accepts only what a
// device with TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 may send: flags NEEDS_CSUM/DATA_VALID,
// GSO none/TCPv4/TCPv6 (with or without ECN).
Result<VirtioNetHeader, VirtioNetError> parse_virtio_net_header(std::span<const uint8_t> bytes);

void emit_virtio_net_header(const VirtioNetHeader& header, std::span<uint8_t, virtio_net_header_size> out);

// For a received packet whose header says NEEDS_CSUM: the checksum field holds only the
// pseudo-header sum (the kernel's CHECKSUM_PARTIAL); sums from csum_start to the end of
// the packet and stores the final checksum, so the packet validates like any other.
// Without NEEDS_CSUM it does nothing.
Result<Ok, VirtioNetError> complete_checksum(const VirtioNetHeader& header, std::span<uint8_t> packet);

// What to put in front of an IP packet (built by lwIP, headers trusted but still checked)
// so the kernel finishes it: for TCP, NEEDS_CSUM with the pseudo-header sum stored in the
// checksum field, and when the payload is longer than `mss`, GSO TCPv4/TCPv6 with
// gso_size = mss so the kernel cuts it into wire-sized segments. Other protocols get an
// empty header (their checksum is already complete).
struct TcpOffloadPlan {
  VirtioNetHeader header;
  // The value to store big-endian at packet[checksum_at] (the TCP checksum field), or
  // nothing for non-TCP packets.
  std::optional<uint16_t> partial_checksum;
  size_t checksum_at = 0;
};
Result<TcpOffloadPlan, VirtioNetError> plan_offload(std::span<const uint8_t> packet, uint16_t mss);

}  // namespace roam::wire
