#include "stack/control/segment_mac_guard.hpp"

#include <fmt/format.h>

#include "base/clock.hpp"
#include "stack/flow_key.hpp"
#include "stack/wire/segment_mac_option.hpp"
#include "base/log.hpp"

namespace roam {

namespace {

// One Node per process, and at most one guard per Node.
std::unordered_map<const Node*, SegmentMacGuard*>& guards() {
  static std::unordered_map<const Node*, SegmentMacGuard*> map;
  return map;
}

crypto::SegmentDirection reverse(crypto::SegmentDirection d) {
  return d == crypto::SegmentDirection::client_to_server ? crypto::SegmentDirection::server_to_client
                                                         : crypto::SegmentDirection::client_to_server;
}

crypto::SegmentDirection from_wire(wire::SegmentMacDirection d) {
  return d == wire::SegmentMacDirection::client_to_server ? crypto::SegmentDirection::client_to_server
                                                          : crypto::SegmentDirection::server_to_client;
}

wire::SegmentMacDirection to_wire(crypto::SegmentDirection d) {
  return d == crypto::SegmentDirection::client_to_server ? wire::SegmentMacDirection::client_to_server
                                                         : wire::SegmentMacDirection::server_to_client;
}

static_assert(crypto::SegmentMacKey::key_bytes == wire::segment_mac_key_bytes);

crypto::SegmentFields fields_of(const wire::TcpSegmentView& tcp, crypto::SegmentDirection direction, uint64_t id) {
  return {direction, id, tcp.seq, tcp.ack, tcp.flags, tcp.window, tcp.payload};
}

}  // namespace

SegmentMacGuard::SegmentMacGuard(Node& node) : node_(node) {
  // Every signed packet fits the link: lwIP's MSS shrinks by the option, and a protected
  // flow's multi-MSS segment on a TSO link is cut by the Node and each piece signed
  // (per_piece), never left to the kernel, which would copy one MAC onto every piece.
  node_.reserve_output_space(wire::segment_mac_option_bytes);
  node_.add_input_filter(InputStage::authenticate, this);
  node_.set_output_rewriter(this);
  guards()[&node_] = this;
}

SegmentMacGuard* SegmentMacGuard::on(const Node& node) {
  auto it = guards().find(&node);
  return it == guards().end() ? nullptr : it->second;
}

SegmentMacGuard::~SegmentMacGuard() {
  if (auto it = guards().find(&node_); it != guards().end() && it->second == this) guards().erase(it);
  node_.remove_input_filter(this);
  node_.set_output_rewriter(nullptr);
}

std::string SegmentMacGuard::counters_text() const {
  const auto& c = counters_;
  return fmt::format(
      "segment MAC: connections {}, signed {}, verified {}, dropped missing {} bad {}; adopted {} rebound {} "
      "rekeyed {}",
      c.protected_connections, c.signed_segments, c.verified_segments, c.dropped_missing, c.dropped_bad, c.adopted,
      c.rebound, c.rekeyed);
}

void SegmentMacGuard::protect(const tcp_pcb* pcb, uint64_t connection_id, std::span<const uint8_t, 64> handshake_hash,
                              crypto::SegmentDirection outbound) {
  if (pcb == nullptr) return;
  auto flow = flow_of(pcb);
  auto [it, added] = flows_.try_emplace(flow);
  Entry& entry = it->second;
  if (added) {
    ++counters_.protected_connections;
  } else if (entry.connection_id == connection_id && entry.outbound == outbound && entry.key) {
    // A rollover: the peer may not have the new key yet (see the header).
    ++counters_.rekeyed;
    if (!entry.sign_with_previous || !entry.previous_key) entry.previous_key = std::move(entry.key);
    entry.sign_with_previous = outbound == crypto::SegmentDirection::client_to_server;
  } else {
    entry.previous_key.reset();
    entry.sign_with_previous = false;
  }
  entry.connection_id = connection_id;
  entry.outbound = outbound;
  entry.key = std::make_unique<crypto::SegmentMacKey>(handshake_hash, connection_id);
  entry.adopted_parked = false;
}

void SegmentMacGuard::forget(const FlowKey& flow) {
  flows_.erase(flow);
}

void SegmentMacGuard::prune(const std::function<bool(const FlowKey&)>& held) {
  for (auto it = flows_.begin(); it != flows_.end();) {
    if (find_active_pcb(it->first) != nullptr) {
      it->second.adopted_parked = false;
      ++it;
    } else if (it->second.adopted_parked || (held && held(it->first))) {
      ++it;  // an import waits for the client (the importer forgets it if it gives up), or a move
    } else {
      it = flows_.erase(it);
    }
  }
}

std::optional<wire::SegmentMacState> SegmentMacGuard::state_of(const tcp_pcb* pcb) const {
  if (pcb == nullptr) return std::nullopt;
  return state_of(flow_of(pcb));
}

std::optional<wire::SegmentMacState> SegmentMacGuard::state_of(const FlowKey& flow) const {
  auto it = flows_.find(flow);
  if (it == flows_.end()) return std::nullopt;
  std::optional<wire::SegmentMacState> state(std::in_place);
  state->connection_id = it->second.connection_id;
  state->outbound = to_wire(it->second.outbound);
  it->second.key->export_key(state->key.span());
  return state;
}

void SegmentMacGuard::adopt(const tcp_pcb* pcb, const wire::SegmentMacState& state) {
  if (pcb == nullptr) return;
  adopt(flow_of(pcb), state);
}

void SegmentMacGuard::adopt(const FlowKey& flow, const wire::SegmentMacState& state) {
  auto [it, added] = flows_.try_emplace(flow);
  if (added) ++counters_.protected_connections;
  Entry& entry = it->second;
  entry.connection_id = state.connection_id;
  entry.outbound = from_wire(state.outbound);
  entry.key = std::make_unique<crypto::SegmentMacKey>(state.key.span());
  entry.previous_key.reset();
  entry.sign_with_previous = false;
  entry.adopted_parked = find_active_pcb(flow) == nullptr;
  ++counters_.adopted;
}

bool SegmentMacGuard::rebind(const FlowKey& from, const FlowKey& to) {
  auto it = flows_.find(from);
  if (it == flows_.end()) return false;
  if (from == to) return true;
  ++counters_.rebound;
  Entry entry = std::move(it->second);
  flows_.erase(it);
  flows_.insert_or_assign(to, std::move(entry));
  return true;
}

FilterVerdict SegmentMacGuard::on_input(const InboundPacket& packet) {
  if (flows_.empty() || !packet.tcp) return FilterVerdict::pass;
  auto it = flows_.find(packet.tcp->flow);
  if (it == flows_.end()) return FilterVerdict::pass;
  const wire::TcpSegmentView& tcp = packet.tcp->segment;
  std::array<uint8_t, wire::segment_mac_bytes> carried{};
  switch (wire::find_segment_mac(tcp.options, carried)) {
    case wire::MacOptionLookup::absent:
      if (packet.tcp->handover_option) {
        // A synthetic handover segment: the handover stage checks its own tag, and the
        // Node drops it if no handover filter takes it. It never reaches the guard or lwIP.
        ++counters_.handover_passed;
        return FilterVerdict::pass;
      }
      ++counters_.dropped_missing;
      return FilterVerdict::drop;
    case wire::MacOptionLookup::malformed:
      ++counters_.dropped_bad;
      return FilterVerdict::drop;
    case wire::MacOptionLookup::found:
      break;
  }
  Entry& entry = it->second;
  const auto fields = fields_of(tcp, reverse(entry.outbound), entry.connection_id);
  if (entry.key->verify(fields, carried)) {
    entry.previous_key.reset();  // the peer switched: the old key is done
    entry.sign_with_previous = false;
    ++counters_.verified_segments;
    return FilterVerdict::pass;
  }
  if (entry.previous_key && entry.previous_key->verify(fields, carried)) {
    ++counters_.verified_previous_key;
    ++counters_.verified_segments;
    return FilterVerdict::pass;
  }
  ++counters_.dropped_bad;
  return FilterVerdict::drop;
}

bool SegmentMacGuard::per_piece(std::span<const uint8_t> packet) {
  if (flows_.empty()) return false;
  auto flow = outbound_flow(packet);
  return flow && flows_.count(*flow) != 0;
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
  const Entry& entry = it->second;
  const crypto::SegmentMacKey& key =
      entry.sign_with_previous && entry.previous_key ? *entry.previous_key : *entry.key;
  auto tag = key.tag(fields_of(*tcp, entry.outbound, entry.connection_id));
  size_t length = wire::append_segment_mac(packet, *info, *tcp, tag, scratch);
  if (length == 0) {
    ++counters_.unsigned_no_room;
    return packet;
  }
  ++counters_.signed_segments;
  return scratch.first(length);
}

}  // namespace roam
