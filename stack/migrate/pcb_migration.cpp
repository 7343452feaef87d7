#include "stack/migrate/pcb_migration.hpp"

#include <algorithm>

#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/pcb_owner.hpp"
#include "stack/lwip_address.hpp"

namespace roam::migrate {

namespace {

// tcp_write takes 16-bit lengths (DESIGN.md section 8).
constexpr size_t max_lwip_chunk = 0xFFFF;
// A restarted connection starts with at most this many segments in flight: the new path's
// capacity is unknown (RFC 5681's restart window, as lwIP's own RTO recovery does).
constexpr uint32_t restart_window_segments = 10;

void clear_callbacks(tcp_pcb* pcb) {
  tcp_arg(pcb, nullptr);
  tcp_recv(pcb, nullptr);
  tcp_sent(pcb, nullptr);
  tcp_err(pcb, nullptr);
  tcp_poll(pcb, nullptr, 0);
}

// Copies a segment's payload bytes [from, to) (sequence numbers) into out.
void append_segment_payload(const tcp_seg* seg, uint32_t from, uint32_t to, std::vector<uint8_t>& out) {
  uint32_t seqno = lwip_ntohl(seg->tcphdr->seqno);
  size_t skip = from - seqno;
  size_t count = to - from;
  size_t header_bytes = seg->p->tot_len - seg->len;  // headers precede the payload in p
  size_t old_size = out.size();
  out.resize(old_size + count);
  pbuf_copy_partial(seg->p, out.data() + old_size, static_cast<u16_t>(count), static_cast<u16_t>(header_bytes + skip));
}

// The peer's silence is counted from now (stack/dead_peer.hpp): the time a connection
// spent frozen, or waiting for a move the peer announced, says nothing about the peer.
void restart_silence_clock(tcp_pcb* pcb) {
  pcb->tmr = tcp_ticks;
  pcb->keep_cnt_sent = 0;
}

// The send queue as one byte stream from snd_una. After a fast retransmit or an RTO,
// segments sit on either list in any order and the first may be partly acknowledged:
// gather both lists and sort by sequence number; the caller copies each byte once.
std::vector<const tcp_seg*> send_segments(const tcp_pcb* pcb) {
  std::vector<const tcp_seg*> segments;
  for (const tcp_seg* seg = pcb->unacked; seg != nullptr; seg = seg->next) segments.push_back(seg);
  for (const tcp_seg* seg = pcb->unsent; seg != nullptr; seg = seg->next) segments.push_back(seg);
  // Signed distance from lastack: a partly acknowledged first segment starts *before*
  // lastack (common with TSO, where one segment spans many ACKs) and must sort first.
  std::sort(segments.begin(), segments.end(), [pcb](const tcp_seg* a, const tcp_seg* b) {
    return static_cast<int32_t>(lwip_ntohl(a->tcphdr->seqno) - pcb->lastack) <
           static_cast<int32_t>(lwip_ntohl(b->tcphdr->seqno) - pcb->lastack);
  });
  return segments;
}

}  // namespace

bool read_send_queue(const tcp_pcb* pcb, uint32_t from, std::vector<uint8_t>& out) {
  if (pcb == nullptr || TCP_SEQ_LT(from, pcb->lastack) || TCP_SEQ_GT(from, pcb->snd_lbb)) return false;
  const size_t start = out.size();
  out.reserve(start + (pcb->snd_lbb - from));
  uint32_t cursor = pcb->lastack;
  for (const tcp_seg* seg : send_segments(pcb)) {
    uint32_t begin = lwip_ntohl(seg->tcphdr->seqno);
    uint32_t end = begin + seg->len;
    if (TCP_SEQ_GT(begin, cursor)) break;  // a hole: checked below
    if (TCP_SEQ_LEQ(end, cursor)) continue;
    uint32_t copy_from = TCP_SEQ_LT(cursor, from) ? from : cursor;
    if (TCP_SEQ_LT(copy_from, end)) append_segment_payload(seg, copy_from, end, out);
    cursor = end;
  }
  if (cursor != pcb->snd_lbb) {
    out.resize(start);
    return false;
  }
  return true;
}

void append_refused_data(const tcp_pcb* pcb, std::vector<uint8_t>& out) {
  if (pcb == nullptr || pcb->refused_data == nullptr) return;
  append_pbuf(out, *pcb->refused_data);
}

Result<Ok, std::string> check_movable(const tcp_pcb* pcb) {
  if (pcb == nullptr) return unexpected(std::string("no connection"));
  if (pcb->state != ESTABLISHED && pcb->state != CLOSE_WAIT)
    return unexpected(std::string("only ESTABLISHED or CLOSE_WAIT connections can move (state ") +
                      std::to_string(static_cast<int>(pcb->state)) + ")");
  if ((pcb->flags & TF_FIN) != 0) return unexpected(std::string("closing (FIN queued)"));
  if ((pcb->flags & TF_RXCLOSED) != 0) return unexpected(std::string("receive side shut down"));
  return Ok{};
}

void freeze_pcb(tcp_pcb* pcb) {
  TCP_RMV_ACTIVE(pcb);
}

void thaw_pcb(tcp_pcb* pcb) {
  restart_silence_clock(pcb);
  TCP_REG_ACTIVE(pcb);
  tcp_output(pcb);
}

void discard_frozen_pcb(tcp_pcb* pcb) {
  clear_callbacks(pcb);
  tcp_clear_flags(pcb, TF_ACK_DELAY | TF_ACK_NOW);  // nothing may leave this pcb any more
  tcp_pcb_purge(pcb);
  pcb->state = CLOSED;
  tcp_free(pcb);
}

Result<wire::ConnectionSnapshot, std::string> capture_snapshot(const tcp_pcb* pcb, std::span<const uint8_t> received,
                                                               std::span<const uint8_t> app_state) {
  auto movable = check_movable(pcb);
  if (!movable) return unexpected(movable.error());
  wire::ConnectionSnapshot s;
  s.local_address = from_lwip(pcb->local_ip);
  s.remote_address = from_lwip(pcb->remote_ip);
  s.local_port = pcb->local_port;
  s.connection_id = connection_id(pcb);
  s.owner = pcb_owner(pcb);  // whose registrations the new host accepts (issue 11)
  s.remote_port = pcb->remote_port;
  s.state = pcb->state == ESTABLISHED ? wire::SnapshotTcpState::established : wire::SnapshotTcpState::close_wait;

  s.send.snd_una = pcb->lastack;
  s.send.snd_nxt = pcb->snd_nxt;
  s.send.snd_wnd = pcb->snd_wnd;
  s.send.snd_wnd_max = pcb->snd_wnd_max;
  s.send.snd_wl1 = pcb->snd_wl1;
  s.send.snd_wl2 = pcb->snd_wl2;
  s.send.cwnd = pcb->cwnd;
  s.send.ssthresh = pcb->ssthresh;
  s.send.mss = pcb->mss;
  s.send.snd_scale = pcb->snd_scale;
  s.send.rtt_sa = pcb->sa;
  s.send.rtt_sv = pcb->sv;
  s.send.rto = pcb->rto;

  s.receive.rcv_nxt = pcb->rcv_nxt;
  s.receive.rcv_wnd = pcb->rcv_wnd;
  s.receive.rcv_ann_wnd = pcb->rcv_ann_wnd;
  s.receive.rcv_ann_right_edge = pcb->rcv_ann_right_edge;
  s.receive.rcv_scale = pcb->rcv_scale;

  s.options.nodelay = (pcb->flags & TF_NODELAY) != 0;
  s.options.window_scaling = (pcb->flags & TF_WND_SCALE) != 0;
  s.options.keepalive = (pcb->so_options & SOF_KEEPALIVE) != 0;
  s.options.keep_idle_ms = pcb->keep_idle;
  s.options.keep_interval_ms = pcb->keep_intvl;
  s.options.keep_count = pcb->keep_cnt;
  s.options.tos = pcb->tos;
  s.options.ttl = pcb->ttl;

  std::vector<const tcp_seg*> segments = send_segments(pcb);
  // Copied straight into the snapshot's two queues: unacked up to snd_nxt, unsent after.
  uint32_t in_flight = pcb->snd_nxt - pcb->lastack;
  uint32_t queued = pcb->snd_lbb - pcb->lastack;
  if (in_flight > queued) return unexpected(std::string("snd_nxt beyond the send queue"));
  s.unacked.reserve(in_flight);
  s.unsent.reserve(queued - in_flight);
  uint32_t cursor = pcb->lastack;
  const uint32_t split = pcb->snd_nxt;
  for (const tcp_seg* seg : segments) {
    uint32_t begin = lwip_ntohl(seg->tcphdr->seqno);
    uint32_t end = begin + seg->len;
    if (TCP_SEQ_GT(begin, cursor)) return unexpected(std::string("send queue has a hole"));
    if (TCP_SEQ_LEQ(end, cursor)) continue;  // already acknowledged or already copied
    if (TCP_SEQ_LT(cursor, split)) {
      uint32_t to = TCP_SEQ_LT(end, split) ? end : split;
      append_segment_payload(seg, cursor, to, s.unacked);
      cursor = to;
    }
    if (TCP_SEQ_LT(cursor, end)) {
      append_segment_payload(seg, cursor, end, s.unsent);
      cursor = end;
    }
  }
  if (cursor != pcb->snd_lbb || s.unacked.size() != in_flight)
    return unexpected(std::string("send queue does not match snd_nxt / snd_lbb"));

  s.received.assign(received.begin(), received.end());
  // Data lwIP holds because the app refused it comes after what the app already has.
  if (pcb->refused_data != nullptr) append_pbuf(s.received, *pcb->refused_data);
  s.app_state.assign(app_state.begin(), app_state.end());
  auto valid = wire::validate_snapshot(s);
  if (!valid) return unexpected(std::string("snapshot invalid: ") + wire::snapshot_error_name(valid.error()));
  return s;
}

Result<tcp_pcb*, std::string> import_pcb(const wire::ConnectionSnapshot& s, const IpAddress& local_address) {
  auto valid = wire::validate_snapshot(s);
  if (!valid) return unexpected(std::string("snapshot invalid: ") + wire::snapshot_error_name(valid.error()));
  // A delta lacks bytes the connection needs: only a whole snapshot (spliced) imports.
  if (s.precopied) return unexpected(std::string("snapshot is a pre-copy delta (not spliced)"));
  if (local_address.version != s.remote_address.version)
    return unexpected(std::string("local address family differs from the peer's"));
  tcp_pcb* pcb = tcp_alloc(TCP_PRIO_NORMAL);
  if (pcb == nullptr) return unexpected(std::string("out of memory for a pcb"));

  // Identity.
  pcb->local_ip = to_lwip(local_address);
  pcb->remote_ip = to_lwip(s.remote_address);
  pcb->local_port = s.local_port;
  set_connection_id(pcb, s.connection_id);
  if (s.owner) set_pcb_owner(pcb, *s.owner);
  pcb->remote_port = s.remote_port;
  pcb->state = s.state == wire::SnapshotTcpState::established ? ESTABLISHED : CLOSE_WAIT;
  pcb->tos = s.options.tos;
  pcb->ttl = s.options.ttl;
  if (s.options.keepalive) ip_set_option(pcb, SOF_KEEPALIVE);
  pcb->keep_idle = s.options.keep_idle_ms;
  pcb->keep_intvl = s.options.keep_interval_ms;
  pcb->keep_cnt = s.options.keep_count;
  // Only these two flags describe the connection; the rest are transient (DESIGN.md 8).
  if (s.options.window_scaling) tcp_set_flags(pcb, TF_WND_SCALE);
  if (s.options.nodelay) tcp_set_flags(pcb, TF_NODELAY);

  // Receive state: the window must be exactly what the peer was told (forgetting it costs
  // 10x throughput, and a smaller one makes the peer's in-flight data look out of window).
  pcb->rcv_nxt = s.receive.rcv_nxt;
  pcb->rcv_wnd = s.receive.rcv_wnd;
  // The old host may have kept part of its window from lwIP (a receive window sized to the
  // path, stack/tcp_connection.hpp). Here lwIP's own accounting holds: rcv_wnd short of
  // TCP_WND only by the bytes the app has yet to consume, or a close would send RST. The
  // right edge stays as announced; this host's TcpConnection sizes the window from there.
  size_t unread = std::min<size_t>(s.received.size(), TCP_WND_MAX(pcb));
  pcb->rcv_wnd = std::max<tcpwnd_size_t>(pcb->rcv_wnd, static_cast<tcpwnd_size_t>(TCP_WND_MAX(pcb) - unread));
  pcb->rcv_ann_wnd = s.receive.rcv_ann_wnd;
  pcb->rcv_ann_right_edge = s.receive.rcv_ann_right_edge;
  pcb->rcv_scale = s.receive.rcv_scale;

  // Send state.
  pcb->snd_scale = s.send.snd_scale;
  pcb->lastack = s.send.snd_una;
  pcb->snd_wnd = s.send.snd_wnd;
  pcb->snd_wnd_max = s.send.snd_wnd_max;
  pcb->snd_wl1 = s.send.snd_wl1;
  pcb->snd_wl2 = s.send.snd_wl2;
  pcb->mss = s.send.mss;
#if TCP_CALCULATE_EFF_SEND_MSS
  pcb->mss = tcp_eff_send_mss(pcb->mss, &pcb->local_ip, &pcb->remote_ip);  // the new host's MTU
#endif
  pcb->cwnd = std::min<uint32_t>(s.send.cwnd, restart_window_segments * pcb->mss);
  pcb->ssthresh = s.send.ssthresh;
  pcb->sa = s.send.rtt_sa;
  pcb->sv = s.send.rtt_sv;
  pcb->rto = s.send.rto;

  // Queue the bytes again from snd_una: lwIP segments them with their original sequence
  // numbers. Then restore snd_nxt so ACKs for bytes the peer already has are accepted, and
  // mark the state lwIP itself uses after an RTO (everything in flight back on unsent).
  pcb->snd_nxt = pcb->snd_lbb = s.send.snd_una;
  auto queue = [pcb](const std::vector<uint8_t>& bytes) -> bool {
    for (size_t offset = 0; offset < bytes.size();) {
      size_t chunk = std::min(max_lwip_chunk, bytes.size() - offset);
      u8_t flags = TCP_WRITE_FLAG_COPY | (offset + chunk < bytes.size() ? TCP_WRITE_FLAG_MORE : 0);
      if (tcp_write(pcb, bytes.data() + offset, static_cast<u16_t>(chunk), flags) != ERR_OK) return false;
      offset += chunk;
    }
    return true;
  };
  if (!queue(s.unacked) || !queue(s.unsent)) {
    discard_imported_pcb(pcb);
    return unexpected(std::string("out of memory re-queueing the send buffer"));
  }
  pcb->snd_nxt = s.send.snd_nxt;
  if (!s.unacked.empty()) {
    tcp_set_flags(pcb, TF_RTO);
    pcb->rto_end = s.send.snd_nxt;
  }
  pcb->rtime = -1;  // nothing on unacked yet: the timer starts when segments go out
  return pcb;
}

void register_imported_pcb(tcp_pcb* pcb) {
  TCP_REG_ACTIVE(pcb);
}

void discard_imported_pcb(tcp_pcb* pcb) {
  clear_callbacks(pcb);
  tcp_pcb_purge(pcb);
  pcb->state = CLOSED;
  tcp_free(pcb);
}

void restart_transmission(tcp_pcb* pcb) {
  // Everything in flight goes back on unsent and out now, without counting a timeout
  // (tcp_rexmit_rto would also raise the backoff for the next one).
  if (pcb->unacked != nullptr) tcp_rexmit_rto_prepare(pcb);
  pcb->nrtx = 0;
  pcb->rtime = 0;
  tcp_ack_now(pcb);
  tcp_output(pcb);
}

void set_remote_endpoint(tcp_pcb* pcb, const IpAddress& remote, uint16_t port) {
  pcb->remote_ip = to_lwip(remote);
  if (port == 0 || port == pcb->remote_port) return;
  pcb->remote_port = port;
  for (tcp_seg* queue : {pcb->unsent, pcb->unacked})
    for (tcp_seg* seg = queue; seg != nullptr; seg = seg->next) seg->tcphdr->dest = lwip_htons(port);
}

std::vector<FlowKey> rewrite_remote(const IpAddress& old_remote, uint16_t old_port,
                                    const IpAddress& new_remote, uint16_t new_port) {
  ip_addr_t old_ip = to_lwip(old_remote);
  std::vector<tcp_pcb*> changed;
  std::vector<FlowKey> old_flows;
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next) {
    if (!ip_addr_cmp(&pcb->remote_ip, &old_ip)) continue;
    if (old_port != 0 && pcb->remote_port != old_port) continue;
    old_flows.push_back(flow_of(pcb));
    set_remote_endpoint(pcb, new_remote, new_port);
    changed.push_back(pcb);
  }
  // Output after the walk: nothing in tcp_output unlinks pcbs, but keep the walk pure.
  for (tcp_pcb* pcb : changed) restart_transmission(pcb);
  return old_flows;
}

std::vector<FlowKey> rewrite_remote(std::span<tcp_pcb* const> pcbs, const IpAddress& new_remote,
                                    uint16_t new_port, bool restart) {
  std::vector<FlowKey> old_flows;
  for (tcp_pcb* pcb : pcbs) {
    old_flows.push_back(flow_of(pcb));
    set_remote_endpoint(pcb, new_remote, new_port);
    restart_silence_clock(pcb);  // the old server just told us where its peer went
  }
  if (restart)
    for (tcp_pcb* pcb : pcbs) restart_transmission(pcb);
  return old_flows;
}

tcp_pcb* find_connection_pcb(const FlowKey& flow, uint64_t connection_id) {
  tcp_pcb* pcb = find_pcb_by_connection_id(connection_id);
  if (pcb == nullptr) return nullptr;
  return flow_of(pcb) == flow ? pcb : find_active_pcb(flow);
}

std::vector<FlowKey> rewrite_local(const IpAddress& old_local, const IpAddress& new_local) {
  ip_addr_t old_ip = to_lwip(old_local);
  ip_addr_t new_ip = to_lwip(new_local);
  std::vector<tcp_pcb*> changed;
  std::vector<FlowKey> old_flows;
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next) {
    if (!ip_addr_cmp(&pcb->local_ip, &old_ip)) continue;
    old_flows.push_back(flow_of(pcb));
    pcb->local_ip = new_ip;
    changed.push_back(pcb);
  }
  for (tcp_pcb* pcb : changed) restart_transmission(pcb);
  return old_flows;
}

std::vector<FlowKey> rewrite_local(std::span<tcp_pcb* const> pcbs, const IpAddress& new_local) {
  ip_addr_t new_ip = to_lwip(new_local);
  std::vector<FlowKey> old_flows;
  for (tcp_pcb* pcb : pcbs) {
    old_flows.push_back(flow_of(pcb));
    pcb->local_ip = new_ip;
    restart_silence_clock(pcb);  // the peer could not reach us until it is told
  }
  return old_flows;
}

}  // namespace roam::migrate
