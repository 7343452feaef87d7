// SendBufferTuner on simulated paths: a sender that may queue `limit` bytes on a path with
// a fixed bandwidth and base round trip, where bytes above the bandwidth-delay product
// wait in a queue (so the measured round trip grows with them, as on a real bottleneck).
// The limit grows while the path could carry more, settles near twice the path's
// bandwidth-delay product instead of climbing to the cap on its own queue, never passes
// the cap, and does nothing before its first round-trip sample.
#include "stack/send_buffer_tuner.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

using roam::SendBufferTuner;

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;

// One sender on a path: each step of `tick_ns` the sender transmits what its limit allows
// into a queue that drains at `bytes_per_ns`; a byte is acknowledged base_rtt_ns after it
// left the queue. Returns the tuner's limit after `duration_ns`.
struct Path {
  double bytes_per_ns;
  uint64_t base_rtt_ns;
  uint64_t tick_ns = 10'000;  // 10 us steps
};

size_t run(SendBufferTuner& tuner, const Path& path, uint64_t duration_ns, uint32_t first_seq = 1000) {
  uint32_t snd_nxt = first_seq;     // next sequence to send
  uint32_t lastack = first_seq;     // everything before is acknowledged
  double drained = 0;               // bytes that left the bottleneck queue (relative to first_seq)
  struct Ack {
    uint64_t at_ns;
    uint32_t upto;
  };
  std::vector<Ack> pending;  // acknowledgments on their way back, in order
  size_t next_ack = 0;
  for (uint64_t now = 0; now < duration_ns; now += path.tick_ns) {
    // Acknowledgments due now.
    while (next_ack < pending.size() && pending[next_ack].at_ns <= now) {
      uint32_t upto = pending[next_ack++].upto;
      if (static_cast<int32_t>(upto - lastack) > 0) {
        size_t bytes = upto - lastack;
        lastack = upto;
        tuner.on_acked(lastack, bytes, now);
      }
    }
    // The sender fills its limit.
    size_t queued = snd_nxt - lastack;
    if (queued < tuner.limit()) {
      uint32_t burst = static_cast<uint32_t>(tuner.limit() - queued);
      tuner.on_transmitted(snd_nxt + std::min<uint32_t>(burst, 1460), now);  // its first segment
      snd_nxt += burst;
    }
    // The bottleneck drains; what left it is acknowledged a base round trip later.
    double sent_total = static_cast<uint32_t>(snd_nxt - first_seq);
    drained = std::min(sent_total, drained + path.bytes_per_ns * static_cast<double>(path.tick_ns));
    pending.push_back({now + path.base_rtt_ns, first_seq + static_cast<uint32_t>(drained)});
  }
  return tuner.limit();
}

}  // namespace

TEST_CASE("send buffer: starts at 64 KiB and waits for a round-trip sample") {
  SendBufferTuner tuner(4 * MiB);
  CHECK(tuner.limit() == 64 * KiB);
  CHECK(tuner.min_rtt_ns() == 0);
  // Acknowledgments without a transmission sample change nothing.
  tuner.on_acked(5000, 4000, 1'000'000);
  tuner.on_acked(9000, 4000, 2'000'000);
  CHECK(tuner.limit() == 64 * KiB);
  // An initial limit above the cap is the cap.
  CHECK(SendBufferTuner(32 * KiB).limit() == 32 * KiB);
}

TEST_CASE("send buffer: a sample is taken when the probe's sequence is acknowledged, across wrap-around") {
  SendBufferTuner tuner(4 * MiB);
  tuner.on_transmitted(0xFFFFFF00u, 1'000);
  tuner.on_transmitted(0x00000100u, 2'000);  // ignored: one sample at a time
  tuner.on_acked(0xFFFFFE00u, 100, 50'000);  // before the probe's end: no sample
  CHECK(tuner.min_rtt_ns() == 0);
  tuner.on_acked(0x00000010u, 100, 81'000);  // past it, wrapped
  CHECK(tuner.min_rtt_ns() == 80'000);
  // A later, larger sample does not replace the minimum (not even much later); a smaller one does.
  tuner.on_transmitted(0x1000, 100'000);
  tuner.on_acked(0x1000, 100, 300'000);
  tuner.on_transmitted(0x1800, 60'000'000'000);
  tuner.on_acked(0x1800, 100, 60'000'200'000);
  CHECK(tuner.min_rtt_ns() == 80'000);
  tuner.on_transmitted(0x2000, 400'000);
  tuner.on_acked(0x2000, 100, 430'000);
  CHECK(tuner.min_rtt_ns() == 30'000);
}

TEST_CASE("send buffer: a slow path keeps the initial 64 KiB") {
  // 10 MB/s, 1 ms: the bandwidth-delay product is 10 KB.
  SendBufferTuner tuner(4 * MiB);
  size_t limit = run(tuner, Path{0.01, 1'000'000}, 2'000'000'000);
  std::printf("slow path (BDP 10 KB): limit %zu, min rtt %llu ns\n", limit,
              static_cast<unsigned long long>(tuner.min_rtt_ns()));
  CHECK(limit == 64 * KiB);
}

TEST_CASE("send buffer: a fast path grows it to about twice its bandwidth-delay product, not to the cap") {
  // 1 GB/s, 500 us: the bandwidth-delay product is 500 KB. Bytes above it queue, and the
  // queue lengthens every later round trip: the limit must not feed on it.
  SendBufferTuner tuner(4 * MiB);
  size_t limit = run(tuner, Path{1.0, 500'000}, 2'000'000'000);
  std::printf("fast path (BDP 500 KB): limit %zu, min rtt %llu ns\n", limit,
              static_cast<unsigned long long>(tuner.min_rtt_ns()));
  CHECK(limit >= 500'000);      // at least the path's worth: the sender is not the bottleneck
  CHECK(limit <= 4 * 500'000);  // and not the cap: the queue it causes does not feed it
}

TEST_CASE("send buffer: a path faster than the cap reaches the cap and stops there") {
  // 10 GB/s, 1 ms: the bandwidth-delay product is 10 MB, above the 4 MiB cap.
  SendBufferTuner tuner(4 * MiB);
  size_t limit = run(tuner, Path{10.0, 1'000'000}, 1'000'000'000);
  CHECK(limit == 4 * MiB);
}
