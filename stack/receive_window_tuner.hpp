// ReceiveWindowTuner: how many bytes one connection lets its peer have outstanding toward
// it (received but unread plus the window still open), sized to the path as Linux's
// receive-buffer autotuning (dynamic right-sizing) does, instead of lwIP's fixed TCP_WND
// (4 MiB) for every connection. It starts small (initial_bytes) and, once per round trip,
// compares what the app consumed in that round trip with the window: an app that consumed
// more than half of it (the window, not the app, may be what limits the flow) gets twice
// what it consumed, up to the cap. It never shrinks: the peer may already have been told
// about the space.
//
// Why: with a fixed 4 MiB window, a connection whose app stops reading lets its peer push
// 4 MiB into lwIP here; a move must then carry all of it (issue 16, tools/bench/run
// migrate), and every busy connection holds that much memory.
//
// The round trip is the receiver's own estimate, as Linux's when it has no timestamps: the
// time from a moment to the arrival of the first byte beyond the window right edge
// announced at that moment. The peer cannot send that byte before an announcement made
// later reached it, so a sample is never shorter than a round trip; it is close to one
// while the window limits the flow. The smallest sample over the connection's life is
// kept (a sample taken while the app or the sender was slow is only longer), and so is a
// smaller one the send side measured (note_rtt). A sender that
// is not limited by the window gives samples of about window / rate, so its window stops
// at about twice the one it had at its first sample: it does not climb to the cap.
// Pure arithmetic on sequence numbers and caller-supplied times: no lwIP, no clock.
#pragma once

#include <cstddef>
#include <cstdint>

#include "stack/bdp_rounds.hpp"

namespace roam {

class ReceiveWindowTuner {
 public:
  static constexpr size_t initial_bytes = 64 * 1024;

  explicit ReceiveWindowTuner(size_t cap, size_t initial = initial_bytes);

  // Bytes of unread data plus open window this connection allows now.
  size_t window() const { return window_; }
  // 0 until the first sample.
  uint64_t min_rtt_ns() const { return rounds_.min_rtt_ns(); }

  // In-order data arrived: everything before `rcv_nxt` is received, and the right edge
  // announced to the peer so far is `announced_edge` (lwIP's rcv_ann_right_edge).
  void on_received(uint32_t rcv_nxt, uint32_t announced_edge, uint64_t now_ns);
  // A round trip measured another way (the connection's send side, when it sends data:
  // SendBufferTuner::min_rtt_ns); the smaller estimate wins.
  void note_rtt(uint64_t rtt_ns);
  // The app consumed `bytes` received bytes at `now_ns`.
  void on_consumed(size_t bytes, uint64_t now_ns);
  // Starts from `bytes` instead (a connection that arrived by a move: what the old host
  // allowed), within [current window, cap]; never shrinks.
  void raise_to(size_t bytes);

 private:
  size_t cap_;
  size_t window_;
  bool sampling_ = false;
  uint32_t sample_edge_ = 0;
  uint64_t sample_ns_ = 0;
  // Measures bytes consumed per round trip.
  BdpRounds rounds_;
};

}  // namespace roam
