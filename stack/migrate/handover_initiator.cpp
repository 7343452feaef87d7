#include "stack/migrate/handover_initiator.hpp"

#include <algorithm>

#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/lwip_address.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/wire/handover_segment.hpp"
#include "stack/wire/tcp_header.hpp"

namespace roam::migrate {

HandoverInitiator::HandoverInitiator(Node& node, DoneFn done) : node_(node), done_(std::move(done)) {
  node_.add_input_filter(InputStage::handover, this);
  node_.add_output_filter(this);
}

HandoverInitiator::~HandoverInitiator() {
  close();
  node_.remove_input_filter(this);
  node_.remove_output_filter(this);
}

void HandoverInitiator::close() {
  if (closed_) return;
  closed_ = true;
  pending_.clear();
  queue_.clear();
  due_ = {};
  outstanding_ = 0;
}

bool HandoverInitiator::start(tcp_pcb* pcb, uint64_t connection_id, const crypto::HandoverToken& token,
                              uint64_t now_ms) {
  if (closed_ || pcb == nullptr || connection_id == 0) return false;
  FlowKey flow = flow_of(pcb);
  if (pending_.count(flow) != 0) return false;
  Pending pending;
  pending.connection_id = connection_id;
  pending.token = token;
  pending_[flow] = std::move(pending);
  queue_.push_back(flow);
  ++counters_.handovers_started;
  launch_queued(now_ms);
  return true;
}

void HandoverInitiator::launch_queued(uint64_t now_ms) {
  while (outstanding_ < max_outstanding && !queue_.empty()) {
    FlowKey flow = queue_.front();
    queue_.pop_front();
    auto it = pending_.find(flow);
    if (it == pending_.end()) continue;
    if (!launch(flow, it->second, now_ms)) {
      pending_.erase(it);
      ++counters_.handovers_failed;
      finish(flow, false);
      continue;
    }
    ++outstanding_;
  }
}

bool HandoverInitiator::launch(const FlowKey& flow, Pending& pending, uint64_t now_ms) {
  // Read now, not when queued: the connection is held meanwhile, but may have ended.
  tcp_pcb* pcb = find_connection_pcb(flow, pending.connection_id);
  if (pcb == nullptr) return false;
  // Just before the highest byte we ever sent: no ACK of the server's can then exceed what
  // the NAT saw from us; our retransmissions (from lastack) are inside the window the
  // server's update teaches it (DESIGN.md section 8).
  pending.syn_seq = pcb->snd_nxt - 1;
  wire::HandoverSegment syn;
  syn.src = flow.local;
  syn.dst = flow.remote;
  syn.src_port = flow.local_port;
  syn.dst_port = flow.remote_port;
  syn.seq = pending.syn_seq;
  syn.window = static_cast<uint16_t>(std::min<tcpwnd_size_t>(pcb->rcv_ann_wnd, 0xFFFF));
  syn.mss = pcb->mss;
  syn.window_scale = pcb->rcv_scale;
  syn.option.connection_id = pending.connection_id;
  syn.option.rcv_nxt = pcb->rcv_nxt;
  syn.option.tag = crypto::handover_tag(
      pending.token, {crypto::HandoverSegmentKind::syn, pending.connection_id, syn.seq, 0, pcb->rcv_nxt});
  pending.syn.resize(wire::handover_packet_max_bytes);
  size_t length = wire::build_handover_segment(pending.syn, syn);
  if (length == 0) return false;
  pending.syn.resize(length);
  if (!node_.send_packet(pending.syn)) return false;
  ++counters_.syns_sent;
  pending.syns = 1;
  pending.first_sent_ms = now_ms;
  // The first retry waits four answer times (as an RTO waits four deviations), at least
  // first_retry_ms.
  pending.interval_ms = std::clamp<uint64_t>(4 * answer_ms_, first_retry_ms, max_retry_ms);
  pending.next_at_ms = now_ms + pending.interval_ms;
  due_.push({pending.next_at_ms, flow});
  return true;
}

uint64_t HandoverInitiator::on_time(uint64_t now_ms) {
  if (closed_) return UINT64_MAX;
  drop_stale_deadlines();
  while (!due_.empty() && due_.top().at_ms <= now_ms) {
    FlowKey flow = due_.top().flow;
    due_.pop();
    Pending& pending = pending_.at(flow);
    if (pending.syns >= max_syns || find_connection_pcb(flow, pending.connection_id) == nullptr) {
      pending_.erase(flow);
      --outstanding_;
      ++counters_.handovers_failed;
      finish(flow, false);
    } else {
      node_.send_packet(pending.syn);
      ++pending.syns;
      ++counters_.syns_sent;
      ++counters_.syn_retries;
      pending.interval_ms = std::min(pending.interval_ms * 2, max_retry_ms);
      pending.next_at_ms = now_ms + pending.interval_ms;
      due_.push({pending.next_at_ms, flow});
    }
    drop_stale_deadlines();
  }
  launch_queued(now_ms);
  return next_deadline();
}

void HandoverInitiator::drop_stale_deadlines() {
  // Each outstanding handover's own deadline is in due_ (pushed whenever it is set), so
  // an element that does not match its handover (answered, given up) is stale.
  while (!due_.empty()) {
    auto it = pending_.find(due_.top().flow);
    if (it != pending_.end() && it->second.syns > 0 && it->second.next_at_ms == due_.top().at_ms) return;
    due_.pop();
  }
}

void HandoverInitiator::finish(const FlowKey& flow, bool answered) {
  node_.defer([this, flow, answered, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired() || closed_) return;
    if (done_) done_(flow, answered);
  });
}

FilterVerdict HandoverInitiator::on_input(const InboundPacket& packet) {
  // Every carrier segment passes here: the Node parsed it once.
  if (!packet.tcp) return FilterVerdict::pass;
  const auto& segment = packet.tcp->segment;
  const bool syn = segment.has(wire::TcpSegmentView::SYN);
  // A SYN without ACK is a peer opening a connection (or, on a host that also answers
  // handovers, a synthetic SYN for the HandoverResponder): not ours.
  if (syn && !segment.has(wire::TcpSegmentView::ACK)) return FilterVerdict::pass;
  // Ours carry our option; a SYN-ACK without it matters only while a handover is pending.
  if (!packet.tcp->handover_option && !(syn && !pending_.empty())) return FilterVerdict::pass;
  const FlowKey* flow = &packet.tcp->flow;
  wire::HandoverOption option;
  auto lookup = wire::find_handover_option(segment.options, option);
  if (!syn) {
    if (lookup == wire::MacOptionLookup::absent) return FilterVerdict::pass;
    if (lookup == wire::MacOptionLookup::malformed || !segment.payload.empty()) {
      ++counters_.synacks_stray;
      return FilterVerdict::drop;
    }
    // Not a connection of ours (on a host that also answers handovers, the client's update
    // for the HandoverResponder).
    if (find_connection_pcb(*flow, option.connection_id) == nullptr) return FilterVerdict::pass;
    // The server's window update after its SYN-ACK: for the NAT on the way, not for lwIP.
    ++counters_.window_acks_consumed;
    return FilterVerdict::drop;
  }
  auto it = pending_.find(*flow);
  if (lookup == wire::MacOptionLookup::absent && it == pending_.end()) return FilterVerdict::pass;  // not ours
  if (it == pending_.end() || lookup != wire::MacOptionLookup::found) {
    ++counters_.synacks_stray;
    return FilterVerdict::drop;
  }
  Pending& pending = it->second;
  crypto::HandoverFields fields{crypto::HandoverSegmentKind::syn_ack, pending.connection_id, segment.seq, segment.ack,
                                option.rcv_nxt};
  if (option.connection_id != pending.connection_id || segment.ack != pending.syn_seq + 1 ||
      !crypto::verify_handover_tag(pending.token, fields, option.tag)) {
    ++counters_.synacks_forged;
    return FilterVerdict::drop;
  }
  ++counters_.synacks_accepted;
  if (pending.syns == 1) {
    uint64_t sample = packet.now_ms > pending.first_sent_ms ? packet.now_ms - pending.first_sent_ms : 0;
    answer_ms_ = answer_ms_ == 0 ? sample : (7 * answer_ms_ + sample) / 8;
  }
  send_window_update(*flow, pending, segment.seq + 1);
  pending_.erase(it);
  --outstanding_;
  finish(*flow, true);
  launch_queued(packet.now_ms);
  drop_stale_deadlines();
  return FilterVerdict::drop;
}

void HandoverInitiator::send_window_update(const FlowKey& flow, const Pending& pending, uint32_t server_next) {
  tcp_pcb* pcb = find_connection_pcb(flow, pending.connection_id);
  if (pcb == nullptr) return;
  wire::BareAck update;
  update.src = flow.local;
  update.dst = flow.remote;
  update.src_port = flow.local_port;
  update.dst_port = flow.remote_port;
  update.seq = pending.syn_seq + 1;
  update.ack = server_next;
  update.window = static_cast<uint16_t>(std::min<tcpwnd_size_t>(pcb->rcv_ann_wnd >> pcb->rcv_scale, 0xFFFF));
  update.option.connection_id = pending.connection_id;
  update.option.rcv_nxt = pcb->rcv_nxt;
  update.option.tag = crypto::handover_tag(pending.token, {crypto::HandoverSegmentKind::window, pending.connection_id,
                                                           update.seq, update.ack, pcb->rcv_nxt});
  std::array<uint8_t, wire::handover_packet_max_bytes> packet{};
  size_t length = wire::build_bare_ack(packet, update);
  if (length > 0 && node_.send_packet(std::span<const uint8_t>(packet.data(), length))) ++counters_.window_acks_sent;
}

FilterVerdict HandoverInitiator::on_output(std::span<const uint8_t> packet) {
  if (pending_.empty()) return FilterVerdict::pass;
  auto flow = outbound_flow(packet);
  if (!flow || pending_.count(*flow) == 0) return FilterVerdict::pass;
  ++counters_.output_held;
  return FilterVerdict::drop;
}

}  // namespace roam::migrate
