#include "stack/transparent_guard.hpp"

#include <cstring>

namespace roam {

namespace {
IpAddress address_of(const std::array<uint8_t, 16>& bytes, uint8_t version) {
  IpAddress address;
  address.version = version;
  std::memcpy(address.bytes.data(), bytes.data(), version == 4 ? 4 : 16);
  return address;
}
}  // namespace

TransparentVerdict classify_transparent_packet(const wire::PacketInfo& info, const wire::TcpSegmentView* tcp,
                                               const IpAddress& kernel_address, const TransparentAcceptsFn& accepts) {
  // IPv4 only: the routes steered into the device are IPv4, and lwIP's catch-all is too.
  if (info.version != 4 || tcp == nullptr || info.protocol != wire::ip_protocol_tcp) return TransparentVerdict::not_tcp;
  if (!(address_of(tcp->src_address, tcp->version) == kernel_address)) return TransparentVerdict::foreign_source;
  if (tcp->has(wire::TcpSegmentView::SYN) && !tcp->has(wire::TcpSegmentView::ACK) &&
      !accepts(address_of(tcp->dst_address, tcp->version), tcp->dst_port))
    return TransparentVerdict::refuse;
  return TransparentVerdict::pass;
}

FilterVerdict TransparentGuard::on_input(const InboundPacket& packet) {
  if (packet.interface != interface_) return FilterVerdict::pass;
  const wire::TcpSegmentView* tcp = packet.tcp ? &packet.tcp->segment : nullptr;
  switch (classify_transparent_packet(packet.info, tcp, kernel_address_, accepts_)) {
    case TransparentVerdict::pass:
      return FilterVerdict::pass;
    case TransparentVerdict::refuse:
      ++counters_.refused;
      return FilterVerdict::pass;  // matches no listener: lwIP resets it
    case TransparentVerdict::not_tcp:
      ++counters_.not_tcp;
      return FilterVerdict::drop;
    case TransparentVerdict::foreign_source:
      ++counters_.foreign_source;
      return FilterVerdict::drop;
  }
  return FilterVerdict::drop;
}

}  // namespace roam
