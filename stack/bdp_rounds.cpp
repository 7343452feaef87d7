#include "stack/bdp_rounds.hpp"

#include <algorithm>

namespace roam {

void BdpRounds::note_rtt(uint64_t rtt_ns) {
  if (rtt_ns != 0 && (min_rtt_ns_ == 0 || rtt_ns < min_rtt_ns_)) min_rtt_ns_ = rtt_ns;
}

size_t BdpRounds::on_bytes(size_t bytes, uint64_t now_ns, size_t current, size_t cap) {
  if (min_rtt_ns_ == 0 || current >= cap) return current;
  if (!round_open_) {
    // The round counts what flows after its start.
    round_open_ = true;
    round_start_ns_ = now_ns;
    round_bytes_ = 0;
    return current;
  }
  round_bytes_ += bytes;
  uint64_t elapsed = now_ns - round_start_ns_;
  if (elapsed < min_rtt_ns_) return current;
  // Bytes per minimum round trip over this round (the loop hands data and ACKs over in
  // bursts: the round's length averages them).
  double per_rtt = static_cast<double>(round_bytes_) * static_cast<double>(min_rtt_ns_) / static_cast<double>(elapsed);
  round_start_ns_ = now_ns;
  round_bytes_ = 0;
  if (2 * per_rtt <= static_cast<double>(current)) return current;
  double wanted = std::min(2 * per_rtt, static_cast<double>(cap));
  return std::max(current, static_cast<size_t>(wanted));
}

}  // namespace roam
