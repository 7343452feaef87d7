#include "stack/control/segment_mac_guard.hpp"

#include <fmt/format.h>

#include "base/clock.hpp"
#include "base/config_error.hpp"
#include "stack/flow_key.hpp"
#include "stack/wire/segment_mac_option.hpp"
#include "base/log.hpp"

namespace roam {

namespace {

crypto::SegmentDirection reverse(crypto::SegmentDirection d) {
  return d == crypto::SegmentDirection::client_to_server ? crypto::SegmentDirection::server_to_client
                                                         : crypto::SegmentDirection::client_to_server;
}

crypto::SegmentFields fields_of(const wire::TcpSegmentView& tcp, crypto::SegmentDirection direction, uint64_t id) {
  return {direction, id, tcp.seq, tcp.ack, tcp.flags, tcp.window, tcp.payload};
}

}  // namespace

SegmentMacGuard::SegmentMacGuard(Node& node) : node_(node) {
  for (size_t i = 0; i < node_.interface_count(); ++i) {
    // The kernel would cut one signed super-segment into segments no MAC covers.
    if (node_.offloads(i).max_tcp_payload > 0 || node_.offloads(i).tcp_checksum)
      throw ConfigError("--segment-mac needs a link without offloads (--link tun:NAME,no-offload)");
  }
  node_.reserve_output_space(wire::segment_mac_option_bytes);
  node_.add_input_filter(this);
  node_.set_output_rewriter(this);
}

SegmentMacGuard::~SegmentMacGuard() {
  node_.remove_input_filter(this);
  node_.set_output_rewriter(nullptr);
}

std::string SegmentMacGuard::counters_text() const {
  const auto& c = counters_;
  return fmt::format("segment MAC: connections {}, signed {}, verified {}, dropped missing {} bad {}",
                     c.protected_connections, c.signed_segments, c.verified_segments, c.dropped_missing, c.dropped_bad);
}

void SegmentMacGuard::protect(const tcp_pcb* pcb, uint64_t connection_id, std::span<const uint8_t, 64> handshake_hash,
                              crypto::SegmentDirection outbound) {
  if (pcb == nullptr) return;
  auto flow = flow_of(pcb);
  auto [it, added] = flows_.try_emplace(flow);
  if (added) ++counters_.protected_connections;
  it->second.connection_id = connection_id;
  it->second.outbound = outbound;
  it->second.key = std::make_unique<crypto::SegmentMacKey>(handshake_hash, connection_id);
}

void SegmentMacGuard::forget(const FlowKey& flow) {
  flows_.erase(flow);
}

void SegmentMacGuard::prune() {
  std::erase_if(flows_, [](const auto& entry) { return find_active_pcb(entry.first) == nullptr; });
}

FilterVerdict SegmentMacGuard::on_input(const InboundPacket& packet) {
  if (flows_.empty() || packet.info.protocol != 6) return FilterVerdict::pass;
  auto flow = inbound_flow(packet.bytes);
  if (!flow) return FilterVerdict::pass;
  auto it = flows_.find(*flow);
  if (it == flows_.end()) return FilterVerdict::pass;
  auto tcp = wire::parse_tcp_segment(packet.bytes, packet.info);
  if (!tcp) return FilterVerdict::pass;  // the Node validated it; lwIP will judge
  std::array<uint8_t, wire::segment_mac_bytes> carried{};
  switch (wire::find_segment_mac(tcp->options, carried)) {
    case wire::MacOptionLookup::absent:
      ++counters_.dropped_missing;
      return FilterVerdict::drop;
    case wire::MacOptionLookup::malformed:
      ++counters_.dropped_bad;
      return FilterVerdict::drop;
    case wire::MacOptionLookup::found:
      break;
  }
  if (!it->second.key->verify(fields_of(*tcp, reverse(it->second.outbound), it->second.connection_id), carried)) {
    ++counters_.dropped_bad;
    return FilterVerdict::drop;
  }
  ++counters_.verified_segments;
  return FilterVerdict::pass;
}

std::span<const uint8_t> SegmentMacGuard::rewrite(std::span<const uint8_t> packet, std::span<uint8_t> scratch) {
  if (flows_.empty()) return packet;
  auto flow = outbound_flow(packet);
  if (!flow) return packet;
  auto it = flows_.find(*flow);
  if (it == flows_.end()) return packet;
  // lwIP built this packet: read its headers without summing its checksum again.
  auto info = wire::describe_own_tcp_packet(packet);
  if (!info) return packet;
  auto tcp = wire::parse_tcp_segment(packet, *info);
  if (!tcp) return packet;
  auto tag = it->second.key->tag(fields_of(*tcp, it->second.outbound, it->second.connection_id));
  size_t length = wire::append_segment_mac(packet, *info, *tcp, tag, scratch);
  if (length == 0) {
    ++counters_.unsigned_no_room;
    return packet;
  }
  ++counters_.signed_segments;
  return scratch.first(length);
}

}  // namespace roam
