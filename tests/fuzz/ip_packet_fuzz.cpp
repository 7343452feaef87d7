// libFuzzer target for stack/wire: check_ip_packet, parse_tcp_segment, the handover
// option (find_handover_option, and a found one rebuilt into a SYN), and the segment MAC
// option (find_segment_mac on any options; append_segment_mac must give a packet that is
// accepted again and carries the option) on arbitrary bytes.
// Run: fuzz_ip_packet tests/fuzz/corpus/ip_packet (built with Clang only, see CMakeLists.txt).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "stack/wire/handover_segment.hpp"
#include "stack/wire/ip_packet.hpp"
#include "stack/wire/segment_mac_option.hpp"
#include "stack/wire/tcp_header.hpp"

namespace {

using roam::wire::PacketInfo;
using roam::wire::TcpSegmentView;

// Rebuilding an accepted IPv4 TCP segment must give a packet that is accepted again and
// parses to the same fields (the builder and the validator agree).
void check_rebuild(const TcpSegmentView& view) {
  roam::wire::Ipv4TcpFields fields;
  for (size_t i = 0; i < 4; ++i) {
    fields.src[i] = view.src_address[i];
    fields.dst[i] = view.dst_address[i];
  }
  fields.src_port = view.src_port;
  fields.dst_port = view.dst_port;
  fields.seq = view.seq;
  fields.ack = view.ack;
  fields.flags = view.flags;
  fields.window = view.window;
  fields.options = view.options;
  static std::vector<uint8_t> out(65536);
  const size_t n = roam::wire::build_ipv4_tcp(out, fields, view.payload);
  if (n == 0) __builtin_trap();  // the original fit in 65535 bytes, so the rebuild does
  const std::span<const uint8_t> rebuilt(out.data(), n);
  const auto info = roam::wire::check_ip_packet(rebuilt);
  if (!info) __builtin_trap();
  const auto again = roam::wire::parse_tcp_segment(rebuilt, *info);
  if (!again || again->seq != view.seq || again->ack != view.ack || again->flags != view.flags ||
      again->src_port != view.src_port || again->dst_port != view.dst_port || again->window != view.window ||
      again->payload.size() != view.payload.size() || again->options.size() != view.options.size()) {
    __builtin_trap();
  }
}

void check_segment_mac(std::span<const uint8_t> packet, const PacketInfo& info, const TcpSegmentView& view) {
  std::array<uint8_t, roam::wire::segment_mac_bytes> mac{};
  const auto lookup = roam::wire::find_segment_mac(view.options, mac);
  if (lookup != roam::wire::MacOptionLookup::absent) return;  // signing a signed packet is not a case
  const std::array<uint8_t, roam::wire::segment_mac_bytes> tag = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  static std::vector<uint8_t> out(65536 + 64);
  const size_t n = roam::wire::append_segment_mac(packet, info, view, tag, out);
  if (n == 0) return;  // no room in the header
  const std::span<const uint8_t> signed_packet(out.data(), n);
  const auto again = roam::wire::check_ip_packet(signed_packet);  // lengths and checksums still right
  if (!again) __builtin_trap();
  const auto view_again = roam::wire::parse_tcp_segment(signed_packet, *again);
  if (!view_again || view_again->payload.size() != view.payload.size()) __builtin_trap();
  if (roam::wire::find_segment_mac(view_again->options, mac) != roam::wire::MacOptionLookup::found || mac != tag)
    __builtin_trap();
}

// The handover option parser on any options; a found option rebuilt into a SYN parses
// back to the same fields, in a valid packet.
void check_handover_option(const TcpSegmentView& view) {
  roam::wire::HandoverOption option;
  if (roam::wire::find_handover_option(view.options, option) != roam::wire::MacOptionLookup::found) return;
  roam::wire::HandoverSegment syn;
  syn.src.version = syn.dst.version = view.version;
  std::copy_n(view.src_address.begin(), view.address_size(), syn.src.bytes.begin());
  std::copy_n(view.dst_address.begin(), view.address_size(), syn.dst.bytes.begin());
  syn.seq = view.seq;
  syn.option = option;
  std::array<uint8_t, roam::wire::handover_packet_max_bytes> out{};
  const size_t n = roam::wire::build_handover_segment(out, syn);
  if (n == 0) __builtin_trap();
  const std::span<const uint8_t> built(out.data(), n);
  const auto info = roam::wire::check_ip_packet(built);
  if (!info) __builtin_trap();
  const auto again = roam::wire::parse_tcp_segment(built, *info);
  roam::wire::HandoverOption option_again;
  if (!again || roam::wire::find_handover_option(again->options, option_again) != roam::wire::MacOptionLookup::found ||
      !(option_again == option))
    __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> packet(data, size);
  (void)roam::wire::describe_own_tcp_packet(packet);  // any bytes: no read out of bounds
  const auto info = roam::wire::check_ip_packet(packet);
  if (info) {
    if (info->length > size || info->transport_offset > info->length) __builtin_trap();
    if (info->protocol == roam::wire::ip_protocol_tcp) {
      const auto tcp = roam::wire::parse_tcp_segment(packet, *info);
      if (!tcp) __builtin_trap();  // a validated TCP packet always parses
      if (tcp->version == 4) check_rebuild(*tcp);
      // What the output path reads without summing agrees with the full check.
      const auto own = roam::wire::describe_own_tcp_packet(packet);
      if (!own || own->length != info->length || own->transport_offset != info->transport_offset) __builtin_trap();
      check_segment_mac(packet, *info, *tcp);
      check_handover_option(*tcp);
    }
  } else if (size >= 6) {
    // parse_tcp_segment must also survive a PacketInfo that does not match the bytes.
    const PacketInfo forged{data[0], roam::wire::ip_protocol_tcp, static_cast<uint16_t>((data[1] << 8) | data[2]),
                            static_cast<uint16_t>((data[3] << 8) | data[4])};
    (void)roam::wire::parse_tcp_segment(packet.subspan(5), forged);
  }
  return 0;
}
