// BdpRounds: the part both buffer tuners share (stack/send_buffer_tuner: bytes the peer
// acknowledged; stack/receive_window_tuner: bytes the app consumed). It keeps the smallest
// round trip seen and measures, over rounds at least that long, how many bytes flowed per
// round trip; a buffer that wants twice that (room for one round trip of data in flight
// and one being refilled, as Linux's autotuning allows) grows to it, up to its cap. It
// never shrinks: a flow that slows later keeps what it had.
// Pure arithmetic on caller-supplied counts and times: no lwIP, no clock.
#pragma once

#include <cstddef>
#include <cstdint>

namespace roam {

// Sequence numbers wrap: a is at or after b when the distance from b fits half the space.
inline bool seq_at_or_after(uint32_t a, uint32_t b) {
  return static_cast<int32_t>(a - b) >= 0;
}

class BdpRounds {
 public:
  // A round trip sample; the smallest one is kept (later samples are only longer when
  // something else was slow).
  void note_rtt(uint64_t rtt_ns);
  // 0 until the first sample.
  uint64_t min_rtt_ns() const { return min_rtt_ns_; }

  // `bytes` flowed at `now_ns`; returns the size a buffer of `current` bytes (cap `cap`)
  // should have now: `current`, or twice the bytes per round trip of a round that just
  // ended when that is more.
  size_t on_bytes(size_t bytes, uint64_t now_ns, size_t current, size_t cap);

 private:
  uint64_t min_rtt_ns_ = 0;
  // The current measuring round: bytes counted since round_start_ns_.
  bool round_open_ = false;
  uint64_t round_start_ns_ = 0;
  uint64_t round_bytes_ = 0;
};

}  // namespace roam
