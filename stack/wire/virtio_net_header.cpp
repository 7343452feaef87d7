#include "stack/wire/virtio_net_header.hpp"

#include "stack/wire/checksum.hpp"
#include "stack/wire/ip_packet.hpp"

namespace roam::wire {

namespace {

uint16_t load_le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
void store_le16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
uint16_t load_be16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }

constexpr size_t tcp_checksum_field = 16;  // RFC 793: offset of the checksum in the TCP header

}  // namespace

std::string_view to_string(VirtioNetError error) {
  switch (error) {
    case VirtioNetError::too_short:
      return "too_short";
    case VirtioNetError::bad_flags:
      return "bad_flags";
    case VirtioNetError::bad_checksum_range:
      return "bad_checksum_range";
    case VirtioNetError::not_ip:
      return "not_ip";
    case VirtioNetError::bad_tcp_header:
      return "bad_tcp_header";
    case VirtioNetError::bad_mss:
      return "bad_mss";
  }
  return "unknown";
}

Result<VirtioNetHeader, VirtioNetError> parse_virtio_net_header(std::span<const uint8_t> bytes) {
  if (bytes.size() < virtio_net_header_size) return unexpected(VirtioNetError::too_short);
  VirtioNetHeader header;
  header.flags = bytes[0];
  header.gso_type = bytes[1];
  header.hdr_len = load_le16(&bytes[2]);
  header.gso_size = load_le16(&bytes[4]);
  header.csum_start = load_le16(&bytes[6]);
  header.csum_offset = load_le16(&bytes[8]);
  if ((header.flags & ~(virtio_net_flag_needs_csum | virtio_net_flag_data_valid)) != 0)
    return unexpected(VirtioNetError::bad_flags);
  const uint8_t gso = header.gso_type & static_cast<uint8_t>(~virtio_net_gso_ecn);
  if (gso != virtio_net_gso_none && gso != virtio_net_gso_tcpv4 && gso != virtio_net_gso_tcpv6)
    return unexpected(VirtioNetError::bad_flags);
  return header;
}

void emit_virtio_net_header(const VirtioNetHeader& header, std::span<uint8_t, virtio_net_header_size> out) {
  out[0] = header.flags;
  out[1] = header.gso_type;
  store_le16(&out[2], header.hdr_len);
  store_le16(&out[4], header.gso_size);
  store_le16(&out[6], header.csum_start);
  store_le16(&out[8], header.csum_offset);
}

Result<Ok, VirtioNetError> complete_checksum(const VirtioNetHeader& header, std::span<uint8_t> packet) {
  if ((header.flags & virtio_net_flag_needs_csum) == 0) return Ok{};
  const size_t start = header.csum_start;
  const size_t field = start + header.csum_offset;
  // The field must be inside the packet, past the smallest IP header, and 2-byte aligned
  // relative to the start (the kernel only ever asks for TCP's 16 or UDP's 6).
  if (start < ipv4_header_min || field + 2 > packet.size() || (header.csum_offset & 1) != 0)
    return unexpected(VirtioNetError::bad_checksum_range);
  // The field already holds the pseudo-header sum: summing over it includes it.
  const uint16_t checksum = checksum_fold(checksum_add(0, packet.subspan(start)));
  packet[field] = static_cast<uint8_t>(checksum >> 8);
  packet[field + 1] = static_cast<uint8_t>(checksum);
  return Ok{};
}

Result<TcpOffloadPlan, VirtioNetError> plan_offload(std::span<const uint8_t> packet, uint16_t mss) {
  TcpOffloadPlan plan;
  if (packet.empty()) return unexpected(VirtioNetError::not_ip);
  const uint8_t version = packet[0] >> 4;
  size_t ip_header = 0;
  uint8_t protocol = 0;
  size_t ip_length = 0;
  if (version == 4) {
    if (packet.size() < ipv4_header_min) return unexpected(VirtioNetError::not_ip);
    ip_header = static_cast<size_t>(packet[0] & 0x0f) * 4;
    protocol = packet[9];
    ip_length = load_be16(&packet[2]);
    if (ip_header < ipv4_header_min) return unexpected(VirtioNetError::not_ip);
  } else if (version == 6) {
    if (packet.size() < ipv6_header_size) return unexpected(VirtioNetError::not_ip);
    ip_header = ipv6_header_size;  // lwIP adds no extension headers to what it sends
    protocol = packet[6];
    ip_length = ipv6_header_size + load_be16(&packet[4]);
  } else {
    return unexpected(VirtioNetError::not_ip);
  }
  if (ip_length != packet.size() || ip_header > ip_length) return unexpected(VirtioNetError::not_ip);
  if (protocol != ip_protocol_tcp) return plan;  // complete checksum already, never segmented

  if (ip_length < ip_header + tcp_header_min) return unexpected(VirtioNetError::bad_tcp_header);
  const size_t tcp_header = static_cast<size_t>(packet[ip_header + 12] >> 4) * 4;
  if (tcp_header < tcp_header_min || ip_header + tcp_header > ip_length)
    return unexpected(VirtioNetError::bad_tcp_header);
  const size_t tcp_length = ip_length - ip_header;
  const size_t payload = tcp_length - tcp_header;

  plan.header.flags = virtio_net_flag_needs_csum;
  plan.header.hdr_len = static_cast<uint16_t>(ip_header + tcp_header);
  plan.header.csum_start = static_cast<uint16_t>(ip_header);
  plan.header.csum_offset = tcp_checksum_field;
  if (payload > mss) {
    if (mss == 0) return unexpected(VirtioNetError::bad_mss);
    plan.header.gso_type = version == 4 ? virtio_net_gso_tcpv4 : virtio_net_gso_tcpv6;
    plan.header.gso_size = mss;
  }
  // CHECKSUM_PARTIAL convention (Linux __tcp_v4_send_check): the field holds the folded,
  // not complemented, pseudo-header sum over the whole TCP length; the kernel (or each
  // segment GSO cuts) adds the rest.
  uint32_t sum;
  if (version == 4) {
    sum = pseudo_header_sum_v4(packet.subspan<12, 4>(), packet.subspan<16, 4>(), ip_protocol_tcp,
                               static_cast<uint16_t>(tcp_length));
  } else {
    sum = pseudo_header_sum_v6(packet.subspan<8, 16>(), packet.subspan<24, 16>(), ip_protocol_tcp,
                               static_cast<uint32_t>(tcp_length));
  }
  plan.partial_checksum = static_cast<uint16_t>(~checksum_fold(sum));
  plan.checksum_at = ip_header + tcp_checksum_field;
  return plan;
}

}  // namespace roam::wire
