#include "stack/send_buffer_tuner.hpp"

#include <algorithm>

namespace roam {

namespace {
// Sequence numbers wrap: a is at or after b when the distance from b fits half the space.
bool seq_at_or_after(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) >= 0;
}
}  // namespace

SendBufferTuner::SendBufferTuner(size_t cap, size_t initial) : cap_(cap), limit_(std::min(initial, cap)) {}

void SendBufferTuner::on_transmitted(uint32_t first_end, uint64_t now_ns) {
  if (probing_) return;  // one sample at a time
  probing_ = true;
  probe_end_ = first_end;
  probe_ns_ = now_ns;
}

void SendBufferTuner::on_acked(uint32_t acked, size_t bytes, uint64_t now_ns) {
  if (probing_ && seq_at_or_after(acked, probe_end_)) {
    probing_ = false;
    uint64_t sample = std::max<uint64_t>(now_ns - probe_ns_, 1);
    if (min_rtt_ns_ == 0 || sample < min_rtt_ns_) min_rtt_ns_ = sample;
  }
  if (min_rtt_ns_ == 0 || limit_ >= cap_) return;
  if (!round_open_) {
    // The round counts what is acknowledged after its start.
    round_open_ = true;
    round_start_ns_ = now_ns;
    round_acked_ = 0;
    return;
  }
  round_acked_ += bytes;
  uint64_t elapsed = now_ns - round_start_ns_;
  if (elapsed < min_rtt_ns_) return;
  // What the path delivered per minimum round trip over this round (the loop hands ACKs
  // over in bursts: the round's length averages them).
  double per_rtt = static_cast<double>(round_acked_) * static_cast<double>(min_rtt_ns_) / static_cast<double>(elapsed);
  round_open_ = true;
  round_start_ns_ = now_ns;
  round_acked_ = 0;
  if (2 * per_rtt > static_cast<double>(limit_)) {
    double wanted = std::min(2 * per_rtt, static_cast<double>(cap_));
    limit_ = std::max(limit_, static_cast<size_t>(wanted));
  }
}

}  // namespace roam
