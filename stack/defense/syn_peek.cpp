#include "stack/defense/syn_peek.hpp"

#include "stack/wire/ip_packet.hpp"

namespace roam::defense {

std::optional<SynPeek> peek_syn(std::span<const uint8_t> packet) {
  // The headers as the output path reads lwIP's own packets: no checksum summed (a hint
  // needs none; the packet is checked in full when it is filtered).
  auto info = wire::describe_own_tcp_packet(packet);
  if (!info) return std::nullopt;
  auto tcp = wire::parse_tcp_segment(packet, *info);
  using Flags = wire::TcpSegmentView;
  if (!tcp || (tcp->flags & (Flags::SYN | Flags::ACK | Flags::RST)) != Flags::SYN) return std::nullopt;
  return SynPeek{cookie_flow_of(*tcp), tcp->seq};
}

}  // namespace roam::defense
