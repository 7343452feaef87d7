// Dead-peer detection for carriers and control channels: the policy (how long a silent
// peer is given), the reasons a connection is lost, and the decision taken on each poll
// of a connection. Pure: fed how long the peer has been silent, returns what to do; no
// lwIP, no clock (stack/tcp_connection.cpp feeds it from lwIP's poll callback).
//
// The rule, one clock per connection: every segment the peer sends restarts it (lwIP's
// pcb->tmr). An idle connection probes after idle_before_probe() of silence and then every
// probe_interval() (RFC 1122 4.2.3.6 keepalives: a live peer answers each with an ACK);
// a connection with data outstanding needs no probe (its retransmissions ask). Either way,
// a peer silent for dead_after_ms is dead: the connection is reset, and its reason is a
// keepalive timeout (nothing was outstanding) or a retransmission timeout. An active open
// that has no answer to its SYN within connect_timeout_ms fails with a connect timeout.
//
// Moves: a frozen (old host) or parked (new host) connection is off lwIP's lists, so no
// poll reaches it; a client's connections keep running while their server moves, which
// is why the probes start only after a third of the bound: a move (well under 10 s) fits
// in the remaining silence of the default 30 s (see README, "Dead peers").
#pragma once

#include <cstdint>

namespace roam {

enum class PeerLoss : uint8_t {
  none = 0,
  reset_by_peer,           // RST on an established connection
  refused,                 // RST answering our SYN: nothing listens there
  connect_timeout,         // no answer to our SYN in time
  keepalive_timeout,       // idle, and the probes went unanswered
  retransmission_timeout,  // data outstanding, never acknowledged
  closed,                  // lwIP reports the connection closed under us
  aborted,                 // anything else lwIP ended (out of memory)
};
const char* peer_loss_name(PeerLoss loss);

struct DeadPeerPolicy {
  // Silence after which a synchronized connection's peer is dead; 0: never (lwIP's own
  // retransmission limit still applies).
  uint32_t dead_after_ms = 0;
  // An active open fails after this long without an answer; 0: lwIP's SYN retries decide.
  uint32_t connect_timeout_ms = 0;

  bool active() const { return dead_after_ms != 0 || connect_timeout_ms != 0; }
  uint32_t idle_before_probe_ms() const { return dead_after_ms / 3; }
  // probes_per_period probes fit between the first probe and death.
  static constexpr uint32_t probes_per_period = 10;
  uint32_t probe_interval_ms() const {
    uint32_t interval = (dead_after_ms - idle_before_probe_ms()) / probes_per_period;
    return interval == 0 ? 1 : interval;
  }
  // How often a connection should be looked at so that no deadline is missed by more
  // than this (never more than 500 ms late).
  uint32_t poll_interval_ms() const;
};

// What one poll sees of a connection.
struct PeerSilence {
  bool connecting = false;        // our SYN is out, no answer yet
  uint64_t silent_ms = 0;         // since the peer was last heard (since our SYN, connecting)
  bool data_outstanding = false;  // sent and unacknowledged, or waiting for the peer's window
  uint32_t probes_sent = 0;       // since the peer was last heard
};

struct PeerVerdict {
  enum class Action : uint8_t { nothing, probe, give_up };
  Action action = Action::nothing;
  PeerLoss reason = PeerLoss::none;  // with give_up
};

PeerVerdict judge_peer(const DeadPeerPolicy& policy, const PeerSilence& seen);

}  // namespace roam
