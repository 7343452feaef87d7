#include "stack/send_buffer_tuner.hpp"

#include <algorithm>

namespace roam {

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
    rounds_.note_rtt(std::max<uint64_t>(now_ns - probe_ns_, 1));
  }
  limit_ = rounds_.on_bytes(bytes, now_ns, limit_, cap_);
}

}  // namespace roam
