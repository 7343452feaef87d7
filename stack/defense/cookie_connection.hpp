// What a verified SYN cookie's ACK becomes: the ConnectionSnapshot of the ESTABLISHED
// connection lwIP would have made from the SYN and this ACK, for the import path migration
// uses (migrate::import_pcb). Pure apart from lwIP's compile-time defaults; any thread.
#pragma once

#include <cstdint>

#include "stack/defense/syn_cookie.hpp"
#include "stack/flow_key.hpp"
#include "stack/wire/connection_snapshot.hpp"
#include "stack/wire/tcp_header.hpp"

namespace roam::defense {

// Per-listener values a new connection inherits (lwIP: SOF_INHERITED, tos, ttl).
struct ListenerTraits {
  bool keepalive = false;
  uint8_t tos = 0;
  uint8_t ttl = 255;
};

// The window our cookie SYN-ACK announces (a SYN's window is never scaled), and the
// window scale it offers when the client offered one: lwIP's own (TCP_RCV_SCALE).
uint16_t cookie_synack_window();
uint8_t cookie_our_window_scale();

// `ack` is the client's ACK (seq = client ISN + 1, ack = cookie + 1) on `flow`, `params`
// what the cookie decoded to. The snapshot is valid (wire::validate_snapshot).
wire::ConnectionSnapshot cookie_snapshot(const FlowKey& flow, const wire::TcpSegmentView& ack,
                                         const CookieParams& params, const ListenerTraits& traits);

}  // namespace roam::defense
