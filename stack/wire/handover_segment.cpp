#include "stack/wire/handover_segment.hpp"

#include <cstring>

#include "stack/wire/tcp_header.hpp"

namespace roam::wire {

namespace {

uint64_t load_be(const uint8_t* p, int bytes) {
  uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value = (value << 8) | p[i];
  return value;
}

void store_be(uint8_t* p, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(value >> (8 * (bytes - 1 - i)));
}

// One builder for both families: the TCP part is the same.
template <size_t N>
IpTcpFields<N> tcp_fields(const IpAddress& src, const IpAddress& dst, uint16_t src_port, uint16_t dst_port,
                          uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
                          std::span<const uint8_t> options) {
  IpTcpFields<N> f;
  std::memcpy(f.src.data(), src.bytes.data(), N);
  std::memcpy(f.dst.data(), dst.bytes.data(), N);
  f.src_port = src_port;
  f.dst_port = dst_port;
  f.seq = seq;
  f.ack = ack;
  f.flags = flags;
  f.window = window;
  f.options = options;
  return f;
}

size_t build(std::span<uint8_t> out, const IpAddress& src, const IpAddress& dst, uint16_t src_port, uint16_t dst_port,
             uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window, std::span<const uint8_t> options) {
  if (src.version != dst.version) return 0;
  if (src.version == 4)
    return build_ipv4_tcp(out, tcp_fields<4>(src, dst, src_port, dst_port, seq, ack, flags, window, options), {});
  return build_ipv6_tcp(out, tcp_fields<16>(src, dst, src_port, dst_port, seq, ack, flags, window, options), {});
}

}  // namespace

std::optional<TcpGlance> glance_tcp(std::span<const uint8_t> packet, const PacketInfo& info) {
  const size_t at = info.transport_offset;
  if (info.protocol != ip_protocol_tcp || at + 14 > packet.size()) return std::nullopt;
  return TcpGlance{packet[at + 13], static_cast<size_t>(packet[at + 12] >> 4) * 4 >= 20 + handover_option_bytes};
}

MacOptionLookup find_handover_option(std::span<const uint8_t> options, HandoverOption& out) {
  std::span<const uint8_t> data;
  auto lookup = find_experimental_option(options, handover_exid, data);
  if (lookup != MacOptionLookup::found) return lookup;
  if (data.size() != handover_option_bytes - 4) return MacOptionLookup::malformed;
  out.connection_id = load_be(data.data(), 8);
  out.rcv_nxt = static_cast<uint32_t>(load_be(data.data() + 8, 4));
  std::memcpy(out.tag.data(), data.data() + 12, handover_tag_bytes);
  return MacOptionLookup::found;
}

namespace {
void write_option(uint8_t* ours, const HandoverOption& option) {
  ours[0] = tcp_option_experimental;
  ours[1] = handover_option_bytes;
  store_be(ours + 2, handover_exid, 2);
  store_be(ours + 4, option.connection_id, 8);
  store_be(ours + 12, option.rcv_nxt, 4);
  std::memcpy(ours + 16, option.tag.data(), handover_tag_bytes);
}
}  // namespace

size_t build_handover_segment(std::span<uint8_t> out, const HandoverSegment& s) {
  uint8_t options[36];
  options[0] = 2;  // MSS
  options[1] = 4;
  store_be(options + 2, s.mss, 2);
  options[4] = 1;  // NOP
  options[5] = 3;  // window scale
  options[6] = 3;
  options[7] = s.window_scale;
  write_option(options + 8, s.option);
  uint8_t flags = s.syn_ack ? (TcpSegmentView::SYN | TcpSegmentView::ACK) : TcpSegmentView::SYN;
  return build(out, s.src, s.dst, s.src_port, s.dst_port, s.seq, s.syn_ack ? s.ack : 0, flags, s.window,
               std::span<const uint8_t>(options, sizeof options));
}

size_t build_bare_ack(std::span<uint8_t> out, const BareAck& s) {
  uint8_t option[handover_option_bytes];
  write_option(option, s.option);
  return build(out, s.src, s.dst, s.src_port, s.dst_port, s.seq, s.ack, TcpSegmentView::ACK, s.window,
               std::span<const uint8_t>(option, sizeof option));
}

}  // namespace roam::wire
