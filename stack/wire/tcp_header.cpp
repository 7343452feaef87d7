#include "stack/wire/tcp_header.hpp"

#include <algorithm>

#include "stack/wire/checksum.hpp"

namespace roam::wire {
namespace {

inline uint16_t load_be16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

inline void store_be16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

inline void store_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

inline size_t round_up4(size_t n) {
  return (n + 3) & ~size_t{3};
}

}  // namespace

Result<TcpSegmentView, PacketError> parse_tcp_segment(std::span<const uint8_t> packet, const PacketInfo& info) {
  if (info.protocol != ip_protocol_tcp) return unexpected(PacketError::unknown_protocol);
  if (info.length > packet.size()) return unexpected(PacketError::bad_total_length);
  const auto ip = packet.first(info.length);

  TcpSegmentView view{};
  view.version = info.version;
  if (info.version == 4) {
    if (ip.size() < ipv4_header_min || info.transport_offset < ipv4_header_min) {
      return unexpected(PacketError::too_short);
    }
    std::copy_n(&ip[12], 4, view.src_address.begin());
    std::copy_n(&ip[16], 4, view.dst_address.begin());
  } else if (info.version == 6) {
    if (ip.size() < ipv6_header_size || info.transport_offset < ipv6_header_size) {
      return unexpected(PacketError::too_short);
    }
    std::copy_n(&ip[8], 16, view.src_address.begin());
    std::copy_n(&ip[24], 16, view.dst_address.begin());
  } else {
    return unexpected(PacketError::bad_version);
  }

  if (info.transport_offset > ip.size() || ip.size() - info.transport_offset < tcp_header_min) {
    return unexpected(PacketError::bad_transport_header);
  }
  const auto tcp = ip.subspan(info.transport_offset);
  const size_t header_length = static_cast<size_t>(tcp[12] >> 4) * 4;
  if (header_length < tcp_header_min || header_length > tcp.size()) {
    return unexpected(PacketError::bad_transport_header);
  }

  view.src_port = load_be16(&tcp[0]);
  view.dst_port = load_be16(&tcp[2]);
  view.seq = load_be32(&tcp[4]);
  view.ack = load_be32(&tcp[8]);
  view.flags = tcp[13];
  view.window = load_be16(&tcp[14]);
  view.header_length = static_cast<uint8_t>(header_length);
  view.options = tcp.subspan(tcp_header_min, header_length - tcp_header_min);
  view.payload = tcp.subspan(header_length);
  return view;
}

size_t ipv4_tcp_packet_size(size_t options_size, size_t payload_size) {
  if (options_size > tcp_options_max) return 0;
  const size_t total = ipv4_header_min + tcp_header_min + round_up4(options_size) + payload_size;
  return total > 0xffff ? 0 : total;
}

namespace {

// The TCP header, options (zero-padded to 32 bits: End of Option List), payload and
// checksum (RFC 9293 section 3.1), at `tcp`, for either family's builder. `pseudo` is the
// pseudo-header sum.
template <size_t N>
void write_tcp(uint8_t* tcp, size_t tcp_length, const IpTcpFields<N>& fields, std::span<const uint8_t> payload,
               uint32_t pseudo) {
  const size_t tcp_header_length = tcp_header_min + round_up4(fields.options.size());
  store_be16(&tcp[0], fields.src_port);
  store_be16(&tcp[2], fields.dst_port);
  store_be32(&tcp[4], fields.seq);
  store_be32(&tcp[8], fields.ack);
  tcp[12] = static_cast<uint8_t>((tcp_header_length / 4) << 4);
  tcp[13] = fields.flags;
  store_be16(&tcp[14], fields.window);
  store_be16(&tcp[16], 0);  // checksum, filled below
  store_be16(&tcp[18], 0);  // urgent pointer
  uint8_t* options = tcp + tcp_header_min;
  std::copy(fields.options.begin(), fields.options.end(), options);
  std::fill(options + fields.options.size(), tcp + tcp_header_length, uint8_t{0});
  std::copy(payload.begin(), payload.end(), tcp + tcp_header_length);
  store_be16(&tcp[16], checksum_fold(checksum_add(pseudo, std::span<const uint8_t>(tcp, tcp_length))));
}

}  // namespace

size_t build_ipv4_tcp(std::span<uint8_t> out, const Ipv4TcpFields& fields, std::span<const uint8_t> payload) {
  const size_t total = ipv4_tcp_packet_size(fields.options.size(), payload.size());
  if (total == 0 || out.size() < total) return 0;
  uint8_t* ip = out.data();
  uint8_t* tcp = ip + ipv4_header_min;

  // IPv4 header, RFC 791 section 3.1.
  ip[0] = 0x45;  // version 4, IHL 5
  ip[1] = 0;     // DSCP/ECN
  store_be16(&ip[2], static_cast<uint16_t>(total));
  store_be16(&ip[4], fields.identification);
  store_be16(&ip[6], 0x4000);  // DF, offset 0
  ip[8] = fields.ttl;
  ip[9] = ip_protocol_tcp;
  store_be16(&ip[10], 0);
  std::copy(fields.src.begin(), fields.src.end(), &ip[12]);
  std::copy(fields.dst.begin(), fields.dst.end(), &ip[16]);
  store_be16(&ip[10], internet_checksum(std::span<const uint8_t>(ip, ipv4_header_min)));

  const size_t tcp_length = total - ipv4_header_min;
  write_tcp(tcp, tcp_length, fields, payload,
            pseudo_header_sum_v4(fields.src, fields.dst, ip_protocol_tcp, static_cast<uint16_t>(tcp_length)));
  return total;
}

size_t build_ipv6_tcp(std::span<uint8_t> out, const Ipv6TcpFields& fields, std::span<const uint8_t> payload) {
  constexpr size_t ipv6_header = 40;
  if (fields.options.size() > tcp_options_max) return 0;
  const size_t tcp_length = tcp_header_min + round_up4(fields.options.size()) + payload.size();
  if (tcp_length > 65535 || out.size() < ipv6_header + tcp_length) return 0;
  uint8_t* ip = out.data();

  // IPv6 header, RFC 8200 section 3.
  ip[0] = 0x60;  // version 6, traffic class 0, flow label 0
  ip[1] = ip[2] = ip[3] = 0;
  store_be16(&ip[4], static_cast<uint16_t>(tcp_length));
  ip[6] = ip_protocol_tcp;
  ip[7] = fields.ttl;
  std::copy(fields.src.begin(), fields.src.end(), &ip[8]);
  std::copy(fields.dst.begin(), fields.dst.end(), &ip[24]);
  write_tcp(ip + ipv6_header, tcp_length, fields, payload,
            pseudo_header_sum_v6(fields.src, fields.dst, ip_protocol_tcp, static_cast<uint32_t>(tcp_length)));
  return ipv6_header + tcp_length;
}

}  // namespace roam::wire
