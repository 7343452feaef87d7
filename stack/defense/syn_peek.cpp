#include "stack/defense/syn_peek.hpp"

#include <algorithm>

namespace roam::defense {

namespace {
constexpr size_t tcp_minimum_header = 20;
constexpr uint8_t tcp_flag_syn = 0x02;
constexpr uint8_t tcp_flag_rst = 0x04;
constexpr uint8_t tcp_flag_ack = 0x10;

uint16_t read16(std::span<const uint8_t> bytes, size_t at) {
  return static_cast<uint16_t>((bytes[at] << 8) | bytes[at + 1]);
}

uint32_t read32(std::span<const uint8_t> bytes, size_t at) {
  return (uint32_t{bytes[at]} << 24) | (uint32_t{bytes[at + 1]} << 16) | (uint32_t{bytes[at + 2]} << 8) |
         bytes[at + 3];
}
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
    if ((read16(packet, 6) & 0x1fff) != 0) return std::nullopt;  // a later fragment: no TCP header
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
  out.flow.remote_port = read16(packet, tcp_at);
  out.flow.local_port = read16(packet, tcp_at + 2);
  out.isn = read32(packet, tcp_at + 4);
  return out;
}

}  // namespace roam::defense
