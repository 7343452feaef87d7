#include "stack/defense/cookie_connection.hpp"

#include <algorithm>

#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"

namespace roam::defense {

namespace {
// lwIP's tcp_process on SYN_RCVD -> ESTABLISHED (tcp_in.c, LWIP_TCP_CALC_INITIAL_CWND).
uint32_t initial_cwnd(uint32_t mss) {
  return std::min(4u * mss, std::max(2u * mss, 4380u));
}
}  // namespace

uint16_t cookie_synack_window() {
  return static_cast<uint16_t>(std::min<uint32_t>(TCP_WND, 0xffff));
}

uint8_t cookie_our_window_scale() {
  return TCP_RCV_SCALE;
}

wire::ConnectionSnapshot cookie_snapshot(const FlowKey& flow, const wire::TcpSegmentView& ack,
                                         const CookieParams& params, const ListenerTraits& traits) {
  wire::ConnectionSnapshot s;
  s.local_address = flow.local;
  s.remote_address = flow.remote;
  s.local_port = flow.local_port;
  s.remote_port = flow.remote_port;
  s.state = wire::SnapshotTcpState::established;
  // The connection's name, as the client computed it from the SYN-ACK: the cookie is our
  // ISN. (A normal accept computes it from lastack, which here is already ISN + 1.)
  s.connection_id = connection_id_from_isns(ack.seq - 1, ack.ack - 1);
  const bool scaling = params.window_scale.has_value();
  const uint8_t snd_scale = scaling ? std::min<uint8_t>(*params.window_scale, 14) : 0;

  // Our SYN-ACK (seq = cookie) is acknowledged: nothing in flight. The window comes from
  // this ACK (scaled: it is not a SYN); lwIP updates it again when it processes the ACK.
  s.send.snd_una = ack.ack;
  s.send.snd_nxt = ack.ack;
  s.send.snd_wnd = uint32_t{ack.window} << snd_scale;
  s.send.snd_wnd_max = s.send.snd_wnd;
  s.send.snd_wl1 = ack.seq - 1;  // as lwIP sets it from the SYN: the ACK updates the window
  s.send.snd_wl2 = ack.ack;
  s.send.mss = params.mss;  // import_pcb lowers it to what our link carries
  s.send.cwnd = initial_cwnd(params.mss);
  s.send.ssthresh = TCP_SND_BUF;
  s.send.snd_scale = snd_scale;
  // No RTT sample (nothing was kept to time the SYN-ACK): lwIP's tcp_alloc defaults.
  s.send.rtt_sa = 0;
  s.send.rtt_sv = static_cast<int16_t>(3000 / TCP_SLOW_INTERVAL);
  s.send.rto = static_cast<int16_t>(3000 / TCP_SLOW_INTERVAL);

  // lwIP's windows after the handshake: the full TCP_WND once scaling was agreed, else
  // what fits 16 bits (tcp_parseopt).
  const uint32_t window = scaling ? TCP_WND : std::min<uint32_t>(TCP_WND, 0xffff);
  s.receive.rcv_nxt = ack.seq;
  s.receive.rcv_wnd = window;
  s.receive.rcv_ann_wnd = window;
  s.receive.rcv_ann_right_edge = ack.seq + window;
  s.receive.rcv_scale = scaling ? TCP_RCV_SCALE : 0;

  s.options.window_scaling = scaling;
  s.options.keepalive = traits.keepalive;
  s.options.keep_idle_ms = TCP_KEEPIDLE_DEFAULT;
  s.options.keep_interval_ms = TCP_KEEPINTVL_DEFAULT;
  s.options.keep_count = TCP_KEEPCNT_DEFAULT;
  s.options.tos = traits.tos;
  s.options.ttl = traits.ttl;
  return s;
}

}  // namespace roam::defense
