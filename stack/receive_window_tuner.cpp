#include "stack/receive_window_tuner.hpp"

#include <algorithm>

namespace roam {

ReceiveWindowTuner::ReceiveWindowTuner(size_t cap, size_t initial) : cap_(cap), window_(std::min(initial, cap)) {}

void ReceiveWindowTuner::raise_to(size_t bytes) {
  window_ = std::max(window_, std::min(bytes, cap_));
}

void ReceiveWindowTuner::note_rtt(uint64_t rtt_ns) {
  rounds_.note_rtt(rtt_ns);
}

void ReceiveWindowTuner::on_received(uint32_t rcv_nxt, uint32_t announced_edge, uint64_t now_ns) {
  if (sampling_) {
    // Still inside the edge the sample started at: data the peer may have sent before
    // it heard of anything newer.
    if (!seq_at_or_after(rcv_nxt, sample_edge_ + 1)) return;
    sampling_ = false;
    rounds_.note_rtt(std::max<uint64_t>(now_ns - sample_ns_, 1));
  }
  // The next sample starts now, at the edge announced so far (never behind rcv_nxt: a
  // peer that sent beyond it, inside a window not announced yet, measures nothing).
  sampling_ = true;
  sample_edge_ = seq_at_or_after(announced_edge, rcv_nxt) ? announced_edge : rcv_nxt;
  sample_ns_ = now_ns;
}

void ReceiveWindowTuner::on_consumed(size_t bytes, uint64_t now_ns) {
  window_ = rounds_.on_bytes(bytes, now_ns, window_, cap_);
}

}  // namespace roam
