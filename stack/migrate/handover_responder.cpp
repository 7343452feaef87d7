#include "stack/migrate/handover_responder.hpp"

#include <algorithm>

#include "lwip/priv/tcp_priv.h"
#include "stack/wire/handover_segment.hpp"
#include "stack/wire/tcp_header.hpp"
#include "base/log.hpp"

namespace roam::migrate {

HandoverResponder::HandoverResponder(Node& node, bool enabled, RebindFn rebind)
    : node_(node), enabled_(enabled), rebind_(std::move(rebind)) {
  node_.add_input_filter(InputStage::handover, this);
}

HandoverResponder::~HandoverResponder() {
  node_.remove_input_filter(this);
}

void HandoverResponder::expect(uint64_t connection_id, const crypto::HandoverToken& token, const FlowKey& parked,
                               uint32_t sent_up_to, uint64_t now_ms) {
  Expected expected;
  expected.token = token;
  expected.parked = parked;
  expected.sent_up_to = sent_up_to;
  expected.expected_at_ms = now_ms;
  expected_[connection_id] = std::move(expected);
  if (now_ms == at_next_on_time)
    unstamped_.push_back(connection_id);
  else
    due_.push({now_ms + unclaimed_for_ms, connection_id});
}

uint64_t HandoverResponder::on_time(uint64_t now_ms) {
  for (uint64_t id : unstamped_) {
    auto it = expected_.find(id);
    if (it == expected_.end() || it->second.expected_at_ms != UINT64_MAX) continue;
    it->second.expected_at_ms = now_ms;
    due_.push({it->second.forget_at_ms(), id});
  }
  unstamped_.clear();
  // Every entry's own deadline is in due_ (pushed whenever it changes), so an element that
  // does not match its entry is stale and simply dropped.
  while (!due_.empty()) {
    const Due& due = due_.top();
    auto it = expected_.find(due.connection_id);
    bool stale = it == expected_.end() || it->second.forget_at_ms() != due.at_ms;
    if (!stale && due.at_ms > now_ms) break;
    if (!stale) expected_.erase(it);
    due_.pop();
  }
  return due_.empty() ? UINT64_MAX : due_.top().at_ms;
}

FilterVerdict HandoverResponder::on_input(const InboundPacket& packet) {
  // Every carrier segment passes here: ours are the ones the Node saw our option in.
  if (!packet.tcp || !packet.tcp->handover_option) return FilterVerdict::pass;
  const auto& segment = packet.tcp->segment;
  wire::HandoverOption option;
  auto lookup = wire::find_handover_option(segment.options, option);
  if (lookup == wire::MacOptionLookup::absent) return FilterVerdict::pass;
  // A SYN-ACK answers a HandoverInitiator (on this host only in a one-stack lab): its turn
  // comes next in the stage, and the Node drops it if no initiator takes it.
  if (segment.has(wire::TcpSegmentView::SYN | wire::TcpSegmentView::ACK)) return FilterVerdict::pass;
  if (!segment.has(wire::TcpSegmentView::SYN) && lookup == wire::MacOptionLookup::found &&
      segment.flags == wire::TcpSegmentView::ACK && segment.payload.empty()) {
    // The client's window update after our SYN-ACK: for the NAT on the way, not for lwIP.
    ++counters_.window_acks_consumed;
    return FilterVerdict::drop;
  }
  if (lookup == wire::MacOptionLookup::malformed || segment.has(wire::TcpSegmentView::ACK) ||
      (segment.flags & (wire::TcpSegmentView::RST | wire::TcpSegmentView::FIN)) != 0 || !segment.payload.empty()) {
    ++counters_.syns_malformed;
    return FilterVerdict::drop;
  }
  if (!enabled_) {
    ++counters_.syns_refused;
    return FilterVerdict::drop;
  }
  auto it = expected_.find(option.connection_id);
  if (it == expected_.end()) {
    ++counters_.syns_unknown;
    return FilterVerdict::drop;
  }
  Expected& expected = it->second;
  crypto::HandoverFields fields{crypto::HandoverSegmentKind::syn, option.connection_id, segment.seq, 0, option.rcv_nxt};
  if (!crypto::verify_handover_tag(expected.token, fields, option.tag)) {
    ++counters_.syns_forged;
    return FilterVerdict::drop;
  }
  IpAddress client;
  client.version = segment.version;
  std::copy_n(segment.src_address.begin(), segment.address_size(), client.bytes.begin());
  if (expected.answered) {
    if (client == expected.client && segment.src_port == expected.client_port && segment.seq == expected.syn_seq) {
      ++counters_.syns_repeated;
      send_replies(expected);
    } else {
      ++counters_.syns_replayed;
    }
    return FilterVerdict::drop;
  }
  tcp_pcb* pcb = rebind_(expected.parked, client, segment.src_port);
  if (pcb == nullptr) {
    ++counters_.syns_unknown;
    expected_.erase(it);
    return FilterVerdict::drop;
  }
  IpAddress server;
  server.version = segment.version;
  std::copy_n(segment.dst_address.begin(), segment.address_size(), server.bytes.begin());
  expected.client = client;
  expected.client_port = segment.src_port;
  answer(expected, option.connection_id, server, segment.dst_port, segment.seq, pcb, packet.now_ms);
  ++counters_.syns_accepted;
  return FilterVerdict::drop;
}

void HandoverResponder::answer(Expected& expected, uint64_t connection_id, const IpAddress& server,
                               uint16_t server_port, uint32_t syn_seq, tcp_pcb* pcb, uint64_t now_ms) {
  // The NAT learns our side's position from the SYN-ACK: just before the highest byte
  // ever sent on this connection, so that no ACK from the client (it may hold
  // out-of-order data up to there) is beyond what the NAT saw. The import restarted
  // snd_nxt at snd_una; the old server's snd_nxt came with it.
  uint32_t position = TCP_SEQ_GT(pcb->snd_nxt, expected.sent_up_to) ? pcb->snd_nxt : expected.sent_up_to;
  wire::HandoverSegment synack;
  synack.src = server;
  synack.dst = expected.client;  // as it reached us, through whatever NAT
  synack.src_port = server_port;
  synack.dst_port = expected.client_port;
  synack.seq = position - 1;
  synack.ack = syn_seq + 1;
  synack.syn_ack = true;
  synack.window = static_cast<uint16_t>(std::min<tcpwnd_size_t>(pcb->rcv_ann_wnd, 0xFFFF));
  synack.mss = pcb->mss;
  synack.window_scale = pcb->rcv_scale;
  synack.option.connection_id = connection_id;
  synack.option.rcv_nxt = pcb->rcv_nxt;
  synack.option.tag = crypto::handover_tag(
      expected.token, {crypto::HandoverSegmentKind::syn_ack, connection_id, synack.seq, synack.ack, pcb->rcv_nxt});
  wire::BareAck window;
  window.src = server;
  window.dst = expected.client;
  window.src_port = server_port;
  window.dst_port = expected.client_port;
  window.seq = position;
  window.ack = syn_seq + 1;
  window.window = static_cast<uint16_t>(std::min<tcpwnd_size_t>(pcb->rcv_ann_wnd >> pcb->rcv_scale, 0xFFFF));
  window.option.connection_id = connection_id;
  window.option.rcv_nxt = pcb->rcv_nxt;
  window.option.tag = crypto::handover_tag(
      expected.token, {crypto::HandoverSegmentKind::window, connection_id, window.seq, window.ack, pcb->rcv_nxt});
  expected.syn_seq = syn_seq;
  expected.answered = true;
  expected.answered_at_ms = now_ms;
  due_.push({expected.forget_at_ms(), connection_id});
  // Built once: a repeated SYN gets exactly the same answer.
  expected.replies.assign(2 * wire::handover_packet_max_bytes, 0);
  size_t first = wire::build_handover_segment(expected.replies, synack);
  size_t second = wire::build_bare_ack(std::span<uint8_t>(expected.replies).subspan(first), window);
  expected.replies.resize(first + second);
  expected.synack_length = first;
  send_replies(expected);
}

void HandoverResponder::send_replies(const Expected& expected) {
  if (expected.synack_length == 0 || expected.replies.size() <= expected.synack_length) return;
  std::span<const uint8_t> replies(expected.replies);
  if (node_.send_packet(replies.first(expected.synack_length))) ++counters_.synacks_sent;
  node_.send_packet(replies.subspan(expected.synack_length));
}

}  // namespace roam::migrate
