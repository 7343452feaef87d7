// A state-only ConnectionSnapshot as the files service checkpoints it (PROTOCOL.md 14):
// no queued bytes, an idle sender (snd_una == snd_nxt), a 64 KiB receive window. Tests
// set the addresses, ids and app state they are about.
#pragma once

#include <cstdint>

#include "stack/wire/connection_snapshot.hpp"

namespace roam::testing {

inline wire::ConnectionSnapshot checkpoint_snapshot(uint32_t snd_nxt, uint32_t rcv_nxt) {
  wire::ConnectionSnapshot s;
  s.local_port = 7000;
  s.remote_port = 49684;
  s.send.snd_una = s.send.snd_nxt = snd_nxt;
  s.send.snd_wnd = s.send.snd_wnd_max = 64000;
  s.send.cwnd = 14600;
  s.send.ssthresh = 0xffffffffu;
  s.send.mss = 1460;
  s.send.rto = 6;
  s.receive.rcv_nxt = rcv_nxt;
  s.receive.rcv_wnd = s.receive.rcv_ann_wnd = 65535;
  s.receive.rcv_ann_right_edge = rcv_nxt + 65535;
  s.options.ttl = 64;
  return s;
}

}  // namespace roam::testing
