#include "stack/wire/ip_packet.hpp"

#include "stack/wire/checksum.hpp"

namespace roam::wire {
namespace {

inline uint16_t load_be16(const uint8_t* p) {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}

// Transport checks shared by both IP versions. `pseudo_sum` is the pseudo-header sum
// (ignored for ICMPv4, which has none: RFC 792).
Result<Ok, PacketError> check_transport(uint8_t version, uint8_t protocol, std::span<const uint8_t> transport,
                                        uint32_t pseudo_sum) {
  switch (protocol) {
    case ip_protocol_tcp: {
      // RFC 9293 section 3.1: data offset counts 32-bit words, minimum 5.
      if (transport.size() < tcp_header_min) return unexpected(PacketError::bad_transport_header);
      const size_t data_offset = static_cast<size_t>(transport[12] >> 4) * 4;
      if (data_offset < tcp_header_min || data_offset > transport.size()) {
        return unexpected(PacketError::bad_transport_header);
      }
      if (checksum_fold(checksum_add(pseudo_sum, transport)) != 0) {
        return unexpected(PacketError::bad_transport_checksum);
      }
      return Ok{};
    }
    case ip_protocol_udp: {
      // RFC 768: the UDP length covers header and data; we require it to match the IP
      // payload exactly rather than silently trimming padding.
      if (transport.size() < udp_header_size) return unexpected(PacketError::bad_transport_header);
      if (load_be16(&transport[4]) != transport.size()) {
        return unexpected(PacketError::bad_transport_header);
      }
      if (load_be16(&transport[6]) == 0) {
        // Zero means "no checksum" over IPv4 (RFC 768) but is forbidden over IPv6
        // (RFC 8200 section 8.1; the RFC 6935 tunnel exception does not apply to us).
        if (version == 4) return Ok{};
        return unexpected(PacketError::bad_transport_checksum);
      }
      if (checksum_fold(checksum_add(pseudo_sum, transport)) != 0) {
        return unexpected(PacketError::bad_transport_checksum);
      }
      return Ok{};
    }
    case ip_protocol_icmp:
    case ip_protocol_icmpv6: {
      // Type, code, checksum and the 4-byte rest-of-header (RFC 792, RFC 4443 section 2.1).
      if (transport.size() < icmp_header_min) return unexpected(PacketError::bad_transport_header);
      // ICMPv4 sums the message alone; ICMPv6 includes the pseudo header (RFC 4443 section 2.3).
      const uint32_t start = protocol == ip_protocol_icmpv6 ? pseudo_sum : 0;
      if (checksum_fold(checksum_add(start, transport)) != 0) {
        return unexpected(PacketError::bad_transport_checksum);
      }
      return Ok{};
    }
    default:
      return unexpected(PacketError::unknown_protocol);
  }
}

Result<PacketInfo, PacketError> check_ipv4(std::span<const uint8_t> packet) {
  // RFC 791 section 3.1.
  if (packet.size() < ipv4_header_min) return unexpected(PacketError::too_short);
  const size_t header_length = static_cast<size_t>(packet[0] & 0x0f) * 4;
  if (header_length < ipv4_header_min) return unexpected(PacketError::bad_header_length);
  const uint16_t total_length = load_be16(&packet[2]);
  if (total_length > packet.size() || total_length < header_length) {
    return unexpected(PacketError::bad_total_length);
  }
  const auto header = packet.first(header_length);
  if (internet_checksum(header) != 0) return unexpected(PacketError::bad_ip_checksum);

  // More-fragments flag or a non-zero offset: we do not reassemble (and lwIP's reassembly
  // is disabled), so any fragment is dropped here.
  const uint16_t flags_offset = load_be16(&packet[6]);
  if ((flags_offset & 0x2000) != 0 || (flags_offset & 0x1fff) != 0) {
    return unexpected(PacketError::fragment);
  }

  const uint8_t protocol = packet[9];
  if (protocol != ip_protocol_tcp && protocol != ip_protocol_udp && protocol != ip_protocol_icmp) {
    return unexpected(PacketError::unknown_protocol);
  }
  const auto transport = packet.subspan(header_length, total_length - header_length);
  uint32_t pseudo_sum = 0;
  if (protocol != ip_protocol_icmp) {
    pseudo_sum = pseudo_header_sum_v4(packet.subspan<12, 4>(), packet.subspan<16, 4>(), protocol,
                                      static_cast<uint16_t>(transport.size()));
  }
  if (auto ok = check_transport(4, protocol, transport, pseudo_sum); !ok) {
    return unexpected(ok.error());
  }
  return PacketInfo{4, protocol, total_length, static_cast<uint16_t>(header_length)};
}

Result<PacketInfo, PacketError> check_ipv6(std::span<const uint8_t> packet) {
  // RFC 8200 section 3.
  if (packet.size() < ipv6_header_size) return unexpected(PacketError::too_short);
  const size_t payload_length = load_be16(&packet[4]);
  const size_t total_length = ipv6_header_size + payload_length;
  // PacketInfo::length is 16 bits; no link we run on carries a larger packet.
  if (total_length > packet.size() || total_length > 0xffff) {
    return unexpected(PacketError::bad_total_length);
  }
  // Only an upper-layer header directly after the fixed header is accepted: extension
  // headers (hop-by-hop, routing, fragment, ...) are not walked.
  const uint8_t next_header = packet[6];
  if (next_header != ip_protocol_tcp && next_header != ip_protocol_udp && next_header != ip_protocol_icmpv6) {
    return unexpected(PacketError::unknown_protocol);
  }
  const auto transport = packet.subspan(ipv6_header_size, payload_length);
  const uint32_t pseudo_sum = pseudo_header_sum_v6(packet.subspan<8, 16>(), packet.subspan<24, 16>(), next_header,
                                                   static_cast<uint32_t>(payload_length));
  if (auto ok = check_transport(6, next_header, transport, pseudo_sum); !ok) {
    return unexpected(ok.error());
  }
  return PacketInfo{6, next_header, static_cast<uint16_t>(total_length), static_cast<uint16_t>(ipv6_header_size)};
}

}  // namespace

std::string_view to_string(PacketError error) {
  switch (error) {
    case PacketError::too_short:
      return "too_short";
    case PacketError::bad_version:
      return "bad_version";
    case PacketError::bad_header_length:
      return "bad_header_length";
    case PacketError::bad_total_length:
      return "bad_total_length";
    case PacketError::bad_ip_checksum:
      return "bad_ip_checksum";
    case PacketError::fragment:
      return "fragment";
    case PacketError::unknown_protocol:
      return "unknown_protocol";
    case PacketError::bad_transport_header:
      return "bad_transport_header";
    case PacketError::bad_transport_checksum:
      return "bad_transport_checksum";
  }
  return "unknown";
}

Result<PacketInfo, PacketError> check_ip_packet(std::span<const uint8_t> packet) {
  if (packet.empty()) return unexpected(PacketError::too_short);
  switch (packet[0] >> 4) {
    case 4:
      return check_ipv4(packet);
    case 6:
      return check_ipv6(packet);
    default:
      return unexpected(PacketError::bad_version);
  }
}

std::optional<PacketInfo> describe_own_tcp_packet(std::span<const uint8_t> packet) {
  if (packet.size() < 40) return std::nullopt;
  const uint8_t version = packet[0] >> 4;
  if (version == 4) {
    const size_t header = static_cast<size_t>(packet[0] & 0x0F) * 4;
    const size_t length = (size_t{packet[2]} << 8) | packet[3];
    const bool fragment = (packet[6] & 0x3F) != 0 || packet[7] != 0;  // more fragments, or an offset
    if (packet[9] != ip_protocol_tcp || header < 20 || length > packet.size() || length < header + 20 || fragment)
      return std::nullopt;
    return PacketInfo{4, ip_protocol_tcp, static_cast<uint16_t>(length), static_cast<uint16_t>(header)};
  }
  if (version == 6 && packet.size() >= 60) {
    const size_t length = 40 + ((size_t{packet[4]} << 8) | packet[5]);
    if (packet[6] != ip_protocol_tcp || length > packet.size() || length > 65535) return std::nullopt;
    return PacketInfo{6, ip_protocol_tcp, static_cast<uint16_t>(length), 40};
  }
  return std::nullopt;
}

}  // namespace roam::wire
