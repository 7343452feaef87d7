#include "stack/defense/syn_peek.hpp"

#include <algorithm>

#include "stack/wire/byte_reader.hpp"

namespace roam::defense {

namespace {
constexpr size_t tcp_minimum_header = 20;
constexpr uint8_t tcp_flag_syn = 0x02;
constexpr uint8_t tcp_flag_rst = 0x04;
constexpr uint8_t tcp_flag_ack = 0x10;
}  // namespace

std::optional<SynPeek> peek_syn(std::span<const uint8_t> packet) {
  if (packet.empty()) return std::nullopt;
  SynPeek out;
  size_t tcp_at = 0;
  const uint8_t version = packet[0] >> 4;
  if (version == 4) {
    if (packet.size() < 20) return std::nullopt;
    const size_t header = static_cast<size_t>(packet[0] & 0x0f) * 4;
    if (header < 20 || packet[9] != 6) return std::nullopt;
    if ((wire::ByteReader(packet.subspan(6)).u16() & 0x1fff) != 0) return std::nullopt;  // a later fragment: no TCP header
    tcp_at = header;
    if (packet.size() < tcp_at + tcp_minimum_header) return std::nullopt;
    out.flow.version = 4;
    std::copy_n(packet.begin() + 12, 4, out.flow.remote.begin());
    std::copy_n(packet.begin() + 16, 4, out.flow.local.begin());
  } else if (version == 6) {
    tcp_at = 40;
    if (packet.size() < tcp_at + tcp_minimum_header || packet[6] != 6) return std::nullopt;
    out.flow.version = 6;
    std::copy_n(packet.begin() + 8, 16, out.flow.remote.begin());
    std::copy_n(packet.begin() + 24, 16, out.flow.local.begin());
  } else {
    return std::nullopt;
  }
  const uint8_t flags = packet[tcp_at + 13];
  if ((flags & (tcp_flag_syn | tcp_flag_ack | tcp_flag_rst)) != tcp_flag_syn) return std::nullopt;
  wire::ByteReader tcp(packet.subspan(tcp_at));
  out.flow.remote_port = tcp.u16();
  out.flow.local_port = tcp.u16();
  out.isn = tcp.u32();
  return out;
}

}  // namespace roam::defense
