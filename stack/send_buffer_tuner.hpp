// SendBufferTuner: how many bytes one connection may keep queued in lwIP (unacknowledged
// plus unsent), sized to the path as Linux's buffer autotuning does, instead of the fixed
// TCP_SND_BUF (4 MiB) for every connection. It starts small (initial_bytes) and grows to
// twice the bytes the path delivered per minimum round trip once the connection uses at
// least half of its limit per round trip; it never shrinks, and stops at the cap.
//
// Why: a sender that may queue 4 MiB on a path whose bandwidth-delay product is tens of
// KiB keeps megabytes in flight or in queues; a move then has to carry them all (issue 16,
// tools/bench/run migrate), and every busy connection holds that much memory.
//
// The round trip is the smallest sample over the connection's life, taken one at a time as
// lwIP's own RTT estimate is, but in nanoseconds (lwIP's is in 500 ms ticks): from the
// moment the first segment of a burst left (on_transmitted) to its acknowledgment
// (on_acked). The first segment, the minimum, and not the mean: queueing that the buffer
// itself causes must not make the buffer grow (a mean RTT times the rate is just the
// bytes in flight; the last byte of a burst waits behind the whole burst). The first
// burst leaves an empty pipe, so its sample is the path's. Not windowed: samples taken
// behind a standing queue would let it feed itself; a path that grows longer later keeps
// the limit where it was (it never shrinks either).
// Pure arithmetic on sequence numbers and caller-supplied times: no lwIP, no clock.
#pragma once

#include <cstddef>
#include <cstdint>

#include "stack/bdp_rounds.hpp"

namespace roam {

class SendBufferTuner {
 public:
  static constexpr size_t initial_bytes = 64 * 1024;

  explicit SendBufferTuner(size_t cap, size_t initial = initial_bytes);

  // Bytes this connection may keep queued now.
  size_t limit() const { return limit_; }
  // 0 until the first sample.
  uint64_t min_rtt_ns() const { return rounds_.min_rtt_ns(); }

  // A burst's first segment, ending before sequence `first_end`, was handed to the link at
  // `now_ns`.
  void on_transmitted(uint32_t first_end, uint64_t now_ns);
  // The peer acknowledged everything before `acked` (lwIP's lastack), `bytes` of it new.
  void on_acked(uint32_t acked, size_t bytes, uint64_t now_ns);

 private:
  size_t cap_;
  size_t limit_;
  bool probing_ = false;
  uint32_t probe_end_ = 0;
  uint64_t probe_ns_ = 0;
  // Measures bytes acknowledged per round trip.
  BdpRounds rounds_;
};

}  // namespace roam
