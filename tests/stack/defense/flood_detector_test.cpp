// FloodDetector on synthetic series only: simulated time, seeded Poisson counts per bin.
#include "stack/defense/flood_detector.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <numbers>
#include <optional>
#include <random>
#include <vector>

using roam::defense::FloodDetector;
using Transition = FloodDetector::Transition;

namespace {

constexpr uint16_t port = 443;

// Drives a detector through simulated time, one 10 ms slot at a time, with a Poisson
// number of SYNs per slot at the rate rate_at(t) gives. Records the transitions.
struct Driver {
  FloodDetector detector;
  std::mt19937_64 random;
  uint64_t now_ms = 1'000'000;
  uint64_t alarms = 0;
  uint64_t clears = 0;
  std::optional<uint64_t> first_alarm_ms;
  std::optional<uint64_t> last_clear_ms;

  explicit Driver(uint64_t seed) : random(seed) { detector.update(now_ms); }

  void run(uint64_t duration_ms, const std::function<double(uint64_t)>& rate_at) {
    const uint64_t end = now_ms + duration_ms;
    for (; now_ms < end; now_ms += 10) {
      const Transition t = detector.update(now_ms);
      if (t == Transition::alarm) {
        ++alarms;
        if (!first_alarm_ms) first_alarm_ms = now_ms;
      } else if (t == Transition::all_clear) {
        ++clears;
        last_clear_ms = now_ms;
      }
      const double mean = rate_at(now_ms) / 100.0;  // per 10 ms slot
      if (mean <= 0) continue;
      const uint64_t n = std::poisson_distribution<uint64_t>(mean)(random);
      for (uint64_t i = 0; i < n; ++i) detector.on_syn(port);
    }
  }
  void steady(uint64_t duration_ms, double rate) {
    run(duration_ms, [rate](uint64_t) { return rate; });
  }
};

}  // namespace

TEST_CASE("FloodDetector: trips on a 10x step rise within 2 s, not before it") {
  for (double base : {50.0, 500.0, 5000.0}) {
    CAPTURE(base);
    Driver d(static_cast<uint64_t>(base));
    d.steady(60'000, base);
    CHECK(d.alarms == 0);
    CHECK(d.detector.state().syn.baseline == doctest::Approx(base).epsilon(0.2));
    const uint64_t step = d.now_ms;
    d.steady(5'000, 10 * base);
    REQUIRE(d.first_alarm_ms);
    CHECK(*d.first_alarm_ms - step <= 2'000);
    CHECK(d.detector.alarmed());
    CHECK(d.detector.state().alarms == 1);
    CHECK(d.detector.state().alarmed_since_ms >= step);
  }
}

TEST_CASE("FloodDetector: an idle server going from 1 to 10 SYN/s does not alarm") {
  Driver d(7);
  d.steady(60'000, 1);
  d.steady(60'000, 10);
  CHECK(d.alarms == 0);
}

TEST_CASE("FloodDetector: no alarm on a bursty benign on/off load (bursts 3x the mean)") {
  for (uint64_t seed : {1u, 2u, 3u, 4u, 5u}) {
    CAPTURE(seed);
    for (double mean : {50.0, 400.0, 3000.0}) {
      CAPTURE(mean);
      Driver d(seed * 1000 + static_cast<uint64_t>(mean));
      // On/off: bursts at 3x the mean a quarter of the time, 1/3 of the mean otherwise;
      // each state lasts 0.2 to 3 s.
      std::mt19937_64 phases(seed);
      std::uniform_int_distribution<uint64_t> length(200, 3000);
      std::bernoulli_distribution on(0.25);
      bool bursting = false;
      uint64_t phase_end = 0;
      d.run(600'000, [&](uint64_t t) {
        if (t >= phase_end) {
          bursting = on(phases);
          phase_end = t + length(phases);
        }
        return bursting ? 3 * mean : mean / 3;
      });
      CHECK(d.alarms == 0);
    }
  }
}

TEST_CASE("FloodDetector: no alarm on a diurnal ramp") {
  // A compressed day: 100 to 3000 SYN/s and back over 20 simulated minutes, plus 2x
  // bursts of a second every now and then.
  Driver d(11);
  const uint64_t start = d.now_ms;
  const double period = 1'200'000;
  d.run(1'200'000, [&](uint64_t t) {
    const double phase = static_cast<double>(t - start) / period;
    const double level = 100 + 2900 * 0.5 * (1 - std::cos(2 * std::numbers::pi * phase));
    const bool burst = ((t - start) / 1000) % 37 == 0;
    return burst ? 2 * level : level;
  });
  CHECK(d.alarms == 0);
}

TEST_CASE("FloodDetector: all-clear after the flood ends; the baseline does not learn the flood") {
  Driver d(21);
  d.steady(30'000, 200);
  const double before = d.detector.state().syn.baseline;
  d.steady(60'000, 5000);  // a long flood
  REQUIRE(d.alarms == 1);
  CHECK(d.detector.alarmed());
  CHECK(d.clears == 0);
  // Frozen while alarmed: still the pre-flood normal (the bins before the alarm teach
  // at most baseline + k sigma each).
  CHECK(d.detector.state().syn.baseline < 1.2 * before);
  CHECK(d.detector.state().peak_rate >= 4000);
  const uint64_t end = d.now_ms;
  d.steady(10'000, 200);
  CHECK(d.clears == 1);
  REQUIRE(d.last_clear_ms);
  CHECK(*d.last_clear_ms - end >= d.detector.config().clear_ms);
  CHECK(*d.last_clear_ms - end <= d.detector.config().clear_ms + 1'000);
  CHECK_FALSE(d.detector.alarmed());
  CHECK(d.detector.state().syn.cusum == 0);
  // And it alarms again on the next flood.
  d.steady(3'000, 5000);
  CHECK(d.alarms == 2);
}

TEST_CASE("FloodDetector: hysteresis, a flood that dips briefly stays one alarm") {
  Driver d(31);
  d.steady(30'000, 300);
  for (int i = 0; i < 5; ++i) {
    d.steady(4'000, 6000);
    d.steady(1'000, 300);  // shorter than clear_ms
  }
  CHECK(d.alarms == 1);
  CHECK(d.clears == 0);
  CHECK(d.detector.alarmed());
}

TEST_CASE("FloodDetector: per-destination packet and SYN rates are readable") {
  FloodDetector detector;
  detector.update(0);
  CHECK_FALSE(detector.packets_of(80));
  for (uint64_t bin = 0; bin < 50; ++bin) {
    detector.update(bin * 100);
    for (int i = 0; i < 30; ++i) detector.on_packet(80);
    for (int i = 0; i < 3; ++i) detector.on_syn(80);
  }
  detector.update(5'000);
  REQUIRE(detector.packets_of(80));
  CHECK(detector.packets_of(80)->rate == doctest::Approx(300));
  CHECK(detector.packets_of(80)->baseline == doctest::Approx(300));
  CHECK(detector.syns_of(80)->rate == doctest::Approx(30));
  CHECK(detector.state().syn.rate == doctest::Approx(30));
  CHECK_FALSE(detector.syns_of(81));
}

TEST_CASE("FloodDetector: a long time jump closes a bounded number of bins") {
  FloodDetector detector;
  detector.update(0);
  for (int i = 0; i < 50; ++i) detector.on_syn(1);
  detector.update(uint64_t{1} << 40);  // no hang
  CHECK(detector.state().syn.bins <= 1001);
  CHECK_FALSE(detector.alarmed());
}

namespace {

// A recorded-style bursty benign trace, fixed by its seed: SYNs per 100 ms bin of 10
// heavy-tailed (Pareto, shape 1.5) on/off sources, the classic model of self-similar LAN
// and web traffic (bursty at every time scale, unlike the Poisson series above). Each
// source opens 40 connections a second while on, none while off; mean on/off periods 1 s.
std::vector<uint64_t> bursty_trace(uint64_t seed, size_t bins) {
  std::mt19937_64 random(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  constexpr size_t sources = 10;
  constexpr double shape = 1.5;
  constexpr double min_period_bins = 10.0 * (shape - 1) / shape;  // mean 10 bins
  auto period = [&] {
    return static_cast<uint64_t>(std::ceil(min_period_bins / std::pow(1.0 - unit(random), 1.0 / shape)));
  };
  std::vector<bool> on(sources);
  std::vector<uint64_t> until(sources);
  for (size_t s = 0; s < sources; ++s) {
    on[s] = unit(random) < 0.5;
    until[s] = period();
  }
  std::vector<uint64_t> trace(bins);
  for (size_t b = 0; b < bins; ++b) {
    uint64_t count = 0;
    for (size_t s = 0; s < sources; ++s) {
      if (b >= until[s]) {
        on[s] = !on[s];
        until[s] = b + period();
      }
      if (on[s]) count += std::poisson_distribution<uint64_t>(4.0)(random);  // 40/s per source
    }
    trace[b] = count;
  }
  return trace;
}

// Replays a trace (counts per 100 ms bin, times `scale`) into the detector with fed
// time; returns the offset (ms) of the first alarm from `start_ms`, if any.
std::optional<uint64_t> replay(FloodDetector& detector, uint64_t& now_ms, const std::vector<uint64_t>& trace,
                               uint64_t scale) {
  const uint64_t start = now_ms;
  std::optional<uint64_t> alarm;
  for (uint64_t count : trace) {
    for (uint64_t i = 0; i < count * scale; ++i) detector.on_syn(port);
    now_ms += 100;
    if (detector.update(now_ms) == Transition::alarm && !alarm) alarm = now_ms - start;
  }
  return alarm;
}

}  // namespace

TEST_CASE("FloodDetector: a replayed self-similar bursty benign trace never alarms; the same trace at 10x does within 2 s") {
  for (uint64_t seed : {101u, 202u, 303u}) {
    CAPTURE(seed);
    const auto trace = bursty_trace(seed, 6000);  // 10 minutes
    // The trace is bursty (else the test proves nothing): its busiest second holds 1.6 times the mean.
    double total = 0;
    uint64_t peak_second = 0;
    for (size_t b = 0; b + 10 <= trace.size(); ++b) {
      uint64_t second = 0;
      for (size_t i = b; i < b + 10; ++i) second += trace[i];
      peak_second = std::max(peak_second, second);
    }
    for (uint64_t c : trace) total += static_cast<double>(c);
    const double mean_per_second = total / (static_cast<double>(trace.size()) / 10.0);
    CAPTURE(mean_per_second);
    CAPTURE(peak_second);
    CHECK(static_cast<double>(peak_second) >= 1.6 * mean_per_second);

    FloodDetector detector;
    uint64_t now_ms = 5'000'000;
    detector.update(now_ms);
    CHECK_FALSE(replay(detector, now_ms, trace, 1));
    CHECK(detector.state().alarms == 0);
    // A flood that multiplies the same load by ten: alarmed within 2 s of its start.
    const std::vector<uint64_t> rise(trace.begin(), trace.begin() + 50);
    const auto alarm = replay(detector, now_ms, rise, 10);
    REQUIRE(alarm);
    CHECK(*alarm <= 2'000);
  }
}
