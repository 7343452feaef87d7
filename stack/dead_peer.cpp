#include "stack/dead_peer.hpp"

#include <algorithm>

namespace roam {

const char* peer_loss_name(PeerLoss loss) {
  switch (loss) {
    case PeerLoss::none:
      return "none";
    case PeerLoss::reset_by_peer:
      return "reset by peer";
    case PeerLoss::refused:
      return "refused";
    case PeerLoss::connect_timeout:
      return "connect timeout";
    case PeerLoss::keepalive_timeout:
      return "keepalive timeout";
    case PeerLoss::retransmission_timeout:
      return "retransmission timeout";
    case PeerLoss::closed:
      return "closed";
    case PeerLoss::aborted:
      return "aborted";
  }
  return "unknown";
}

uint32_t DeadPeerPolicy::poll_interval_ms() const {
  uint32_t interval = 500;
  if (dead_after_ms != 0) interval = std::min(interval, probe_interval_ms());
  if (connect_timeout_ms != 0) interval = std::min(interval, std::max<uint32_t>(connect_timeout_ms / 10, 1));
  return interval;
}

PeerVerdict judge_peer(const DeadPeerPolicy& policy, const PeerSilence& seen) {
  using Action = PeerVerdict::Action;
  if (seen.connecting) {
    if (policy.connect_timeout_ms != 0 && seen.silent_ms >= policy.connect_timeout_ms)
      return {Action::give_up, PeerLoss::connect_timeout};
    return {};
  }
  if (policy.dead_after_ms == 0) return {};
  if (seen.silent_ms >= policy.dead_after_ms)
    return {Action::give_up, seen.data_outstanding ? PeerLoss::retransmission_timeout : PeerLoss::keepalive_timeout};
  // Outstanding data is retransmitted by TCP itself: a probe would not be answered anyway
  // (a zero-length segment inside the peer's window asks for nothing).
  if (seen.data_outstanding) return {};
  uint64_t next_probe_at =
      uint64_t{policy.idle_before_probe_ms()} + uint64_t{seen.probes_sent} * policy.probe_interval_ms();
  if (seen.silent_ms >= next_probe_at) return {Action::probe, PeerLoss::none};
  return {};
}

}  // namespace roam
