// ReceiveWindowTuner on simulated paths: a sender that sends as far as the receiver's
// announced window allows, at most at the path's rate, each byte arriving half a round
// trip later; an app that consumes at its own rate (or not at all); window updates that
// take half a round trip back. The window grows while the window is what limits the flow
// (until the flow runs at the path's rate), stays small for an app that reads slowly or
// not at all, never passes the cap, never shrinks, and its round-trip estimate is never
// shorter than the path's round trip.
#include "stack/receive_window_tuner.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <deque>

namespace {

using roam::ReceiveWindowTuner;

constexpr size_t KiB = 1024;
constexpr size_t MiB = 1024 * KiB;

struct Path {
  double bytes_per_ns;    // what the path carries at most
  uint64_t base_rtt_ns;   // round trip without queueing
  double app_bytes_per_ns;  // what the app consumes at most (0: it never reads)
  uint64_t tick_ns = 10'000;  // 10 us steps
};

struct Outcome {
  size_t window = 0;
  double delivered_bytes_per_ns = 0;  // over the second half of the run
  uint64_t min_rtt_ns = 0;
  size_t max_unread = 0;
};

Outcome run(ReceiveWindowTuner& tuner, const Path& path, uint64_t duration_ns, uint32_t first_seq = 1000) {
  struct InFlight {
    uint64_t at_ns;
    uint32_t upto;  // the sender's data up to here arrives at at_ns
  };
  const uint64_t one_way = path.base_rtt_ns / 2;
  std::deque<InFlight> data;     // toward the receiver
  std::deque<InFlight> updates;  // window edges toward the sender
  uint32_t snd_nxt = first_seq;
  uint32_t sender_edge = first_seq + static_cast<uint32_t>(tuner.window());  // from the handshake
  uint32_t rcv_nxt = first_seq;
  uint32_t announced = sender_edge;
  size_t unread = 0;
  double app_credit = 0;
  double path_credit = 0;
  uint64_t consumed_second_half = 0;
  Outcome out;
  for (uint64_t now = 0; now < duration_ns; now += path.tick_ns) {
    while (!data.empty() && data.front().at_ns <= now) {
      uint32_t upto = data.front().upto;
      data.pop_front();
      unread += upto - rcv_nxt;
      rcv_nxt = upto;
      tuner.on_received(rcv_nxt, announced, now);
    }
    while (!updates.empty() && updates.front().at_ns <= now) {
      if (static_cast<int32_t>(updates.front().upto - sender_edge) > 0) sender_edge = updates.front().upto;
      updates.pop_front();
    }
    out.max_unread = std::max(out.max_unread, unread);
    // The app reads what its rate allows.
    app_credit = std::min(app_credit + path.app_bytes_per_ns * static_cast<double>(path.tick_ns), 4.0 * MiB);
    size_t take = std::min(unread, static_cast<size_t>(app_credit));
    if (take > 0) {
      unread -= take;
      app_credit -= static_cast<double>(take);
      tuner.on_consumed(take, now);
      if (now >= duration_ns / 2) consumed_second_half += take;
    }
    // The receiver announces unread + open = window, never moving its edge left.
    uint32_t edge = rcv_nxt - static_cast<uint32_t>(unread) + static_cast<uint32_t>(tuner.window());
    if (static_cast<int32_t>(edge - announced) > 0) {
      announced = edge;
      updates.push_back({now + one_way, edge});
    }
    // The sender sends what the window and the path allow.
    path_credit = std::min(path_credit + path.bytes_per_ns * static_cast<double>(path.tick_ns), 1.0 * MiB);
    auto room = static_cast<int32_t>(sender_edge - snd_nxt);
    if (room > 0) {
      auto burst = static_cast<uint32_t>(std::min<double>(room, path_credit));
      if (burst > 0) {
        snd_nxt += burst;
        path_credit -= burst;
        data.push_back({now + one_way, snd_nxt});
      }
    }
  }
  out.window = tuner.window();
  out.min_rtt_ns = tuner.min_rtt_ns();
  out.delivered_bytes_per_ns = static_cast<double>(consumed_second_half) / static_cast<double>(duration_ns / 2);
  return out;
}

}  // namespace

TEST_CASE("receive window: starts at 64 KiB, grows only after a round-trip sample, within the cap") {
  ReceiveWindowTuner tuner(4 * MiB);
  CHECK(tuner.window() == 64 * KiB);
  CHECK(tuner.min_rtt_ns() == 0);
  // Consumption without a sample changes nothing, however fast.
  tuner.on_consumed(1 * MiB, 1'000);
  tuner.on_consumed(1 * MiB, 2'000'000);
  CHECK(tuner.window() == 64 * KiB);
  CHECK(ReceiveWindowTuner(32 * KiB).window() == 32 * KiB);
}

TEST_CASE("receive window: a sample ends at the first byte beyond the edge announced at its start") {
  ReceiveWindowTuner tuner(4 * MiB);
  tuner.on_received(1000, 1000 + 65536, 0);           // starts: edge 66536
  tuner.on_received(1000 + 65536, 1000 + 65536, 50);  // exactly up to the edge: not yet
  CHECK(tuner.min_rtt_ns() == 0);
  tuner.on_received(1000 + 65537, 200'000, 300'000);  // beyond it: one sample, 300 us
  CHECK(tuner.min_rtt_ns() == 300'000);
  tuner.on_received(300'000, 300'000, 500'000);  // the next started at 300'000 with edge 200'000 (taken as rcv_nxt)
  CHECK(tuner.min_rtt_ns() == 200'000);
  tuner.on_received(900'000, 900'000, 2'000'000);  // longer: the minimum stays
  CHECK(tuner.min_rtt_ns() == 200'000);
}

TEST_CASE("receive window: sequence numbers that wrap") {
  ReceiveWindowTuner tuner(4 * MiB);
  Path path{1.0, 1'000'000, 4.0};  // 1 GB/s, 1 ms: a bandwidth-delay product of ~1 MB
  Outcome out = run(tuner, path, 100'000'000, 0xFFFF'0000u);
  CHECK(out.min_rtt_ns >= path.base_rtt_ns);
  CHECK(out.window > 1 * MiB);
}

TEST_CASE("receive window: a fast reader on a long path grows it to the path's bandwidth-delay product") {
  ReceiveWindowTuner tuner(4 * MiB);
  Path path{1.0, 1'000'000, 4.0};  // BDP ~1 MB; the app could read 4 GB/s
  Outcome out = run(tuner, path, 100'000'000);
  MESSAGE("window " << out.window << ", rate " << out.delivered_bytes_per_ns << " B/ns, rtt " << out.min_rtt_ns);
  CHECK(out.min_rtt_ns >= path.base_rtt_ns);
  CHECK(out.window >= 1'000'000);
  CHECK(out.window <= 4 * MiB);
  CHECK(out.delivered_bytes_per_ns > 0.9 * path.bytes_per_ns);  // the window no longer limits it
}

TEST_CASE("receive window: the cap holds on a path that would want more") {
  ReceiveWindowTuner tuner(512 * KiB);
  Path path{1.0, 2'000'000, 4.0};  // BDP ~2 MB
  Outcome out = run(tuner, path, 100'000'000);
  CHECK(out.window == 512 * KiB);
}

TEST_CASE("receive window: a short fast path stays small") {
  ReceiveWindowTuner tuner(4 * MiB);
  Path path{1.0, 40'000, 4.0};  // 40 us: BDP 40 KB, below the initial window
  Outcome out = run(tuner, path, 50'000'000);
  MESSAGE("window " << out.window << ", rate " << out.delivered_bytes_per_ns);
  CHECK(out.delivered_bytes_per_ns > 0.9 * path.bytes_per_ns);
  CHECK(out.window <= 256 * KiB);
}

TEST_CASE("receive window: a slow reader keeps it small, a reader that stops keeps it where it was") {
  SUBCASE("reads 10 MB/s of a 1 GB/s path") {
    ReceiveWindowTuner tuner(4 * MiB);
    Path path{1.0, 1'000'000, 0.01};  // the app's BDP is ~10 KB
    Outcome out = run(tuner, path, 100'000'000);
    MESSAGE("window " << out.window);
    CHECK(out.window <= 128 * KiB);
    CHECK(out.max_unread <= out.window);
  }
  SUBCASE("never reads") {
    ReceiveWindowTuner tuner(4 * MiB);
    Path path{1.0, 1'000'000, 0.0};
    Outcome out = run(tuner, path, 50'000'000);
    CHECK(out.window == 64 * KiB);
    CHECK(out.max_unread == 64 * KiB);  // the peer filled the window, and no more
  }
}

TEST_CASE("receive window: raise_to starts from a moved connection's window, within the cap, never shrinking") {
  ReceiveWindowTuner tuner(4 * MiB);
  tuner.raise_to(10 * KiB);
  CHECK(tuner.window() == 64 * KiB);
  tuner.raise_to(300 * KiB);
  CHECK(tuner.window() == 300 * KiB);
  tuner.raise_to(100 * KiB);
  CHECK(tuner.window() == 300 * KiB);
  tuner.raise_to(64 * MiB);
  CHECK(tuner.window() == 4 * MiB);
}

TEST_CASE("receive window: a round trip the send side measured counts when it is smaller") {
  ReceiveWindowTuner tuner(4 * MiB);
  tuner.note_rtt(0);  // none yet: nothing
  CHECK(tuner.min_rtt_ns() == 0);
  tuner.note_rtt(500'000);
  CHECK(tuner.min_rtt_ns() == 500'000);
  tuner.on_received(1000, 2000, 0);
  tuner.on_received(3000, 3000, 900'000);  // a longer own sample: the minimum stays
  CHECK(tuner.min_rtt_ns() == 500'000);
  tuner.note_rtt(200'000);
  CHECK(tuner.min_rtt_ns() == 200'000);
}
