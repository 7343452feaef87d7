// FloodDetector: a change-point alarm on the SYN rate (issue 13). Pure and time-fed: no
// libuv, no clock; the caller counts events and calls update(now_ms). A hand-set SYN/s
// threshold is wrong for every server but one: this learns each server's own normal.
//
// Counts go into bins of bin_ms. Each closed bin gives a rate r (per second). A moving
// baseline m (EWMA of r, weight alpha per bin) and its deviation d (EWMA of |r - m|) are
// learned; a bin is normalized as z = (r - m) / s with
//   s = max(1.25 d, relative_sigma * m, sqrt(m * bin_s) / bin_s, sigma_floor)
// (1.25 d ~ a standard deviation; relative_sigma * m so that benign bursts of up to
// 1 + k * relative_sigma times the mean never count; the Poisson term for small counts).
// A one-sided CUSUM S = max(0, S + z - k) alarms when S >= h and r >= min_rate (so an
// idle server going from 1 to 10 SYN/s does not alarm). The baseline learns r clipped at
// m + k s (a rising flood cannot teach it before the alarm) and not at all while alarmed.
// All-clear when the rate stays below max(min_rate, m + k s) for clear_ms.
// Defaults (k 4, relative_sigma 0.5, h 20): a 3x burst gives z <= 4 = k, never counted; a
// 10x step gives z ~ 18 and alarms in two bins (200 ms).
//
// Per destination (listener port) it also keeps packets/s and SYNs/s with their own
// baselines, readable for status; they do not alarm (a bulk download is not a flood).
#pragma once

#include <cstdint>
#include <map>
#include <optional>

namespace roam::defense {

struct FloodDetectorConfig {
  uint64_t bin_ms = 100;
  double alpha = 0.005;           // EWMA weight per bin (time constant ~20 s at 100 ms bins)
  double drift_k = 4.0;           // CUSUM drift, in sigmas
  double threshold_h = 20.0;      // CUSUM alarm level
  double relative_sigma = 0.6;    // sigma is at least this fraction of the baseline
  double sigma_floor = 5.0;       // per second: sigma never below this
  double min_rate = 100.0;        // SYN/s: no alarm below this absolute rate
  uint64_t warmup_bins = 300;     // bins learned (running mean) before any alarm: 30 s
  uint64_t clear_ms = 3000;       // quiet this long while alarmed -> all-clear
  size_t max_destinations = 64;   // per-destination series kept (the rest are not tracked)
};

// One rate series: bins, baseline, deviation, CUSUM. Pure.
class RateSeries {
 public:
  struct State {
    double rate = 0;      // per second, the last closed bin
    double baseline = 0;  // per second
    double deviation = 0; // mean absolute deviation, per second
    double cusum = 0;
    uint64_t bins = 0;    // closed so far
  };

  explicit RateSeries(const FloodDetectorConfig& config) : config_(&config) {}
  void count(uint64_t n = 1) { current_ += n; }
  // Closes one bin. `learn`: false freezes the baseline (while alarmed).
  void close_bin(bool learn);
  double sigma() const;
  // Rate below which a bin counts as quiet.
  double quiet_rate() const;
  const State& state() const { return state_; }
  void reset_cusum() { state_.cusum = 0; }

 private:
  const FloodDetectorConfig* config_;
  uint64_t current_ = 0;
  State state_;
};

class FloodDetector {
 public:
  enum class Transition : uint8_t { none, alarm, all_clear };

  struct State {
    RateSeries::State syn;
    bool alarmed = false;
    uint64_t alarmed_since_ms = 0;  // valid while alarmed
    uint64_t alarms = 0;            // alarms raised so far
    uint64_t peak_rate = 0;         // SYN/s, the highest bin of the current/last alarm
  };

  explicit FloodDetector(FloodDetectorConfig config = {});
  FloodDetector(const FloodDetector&) = delete;
  FloodDetector& operator=(const FloodDetector&) = delete;

  // Events in the bin that holds now_ms: call update(now_ms) first.
  void on_syn(uint16_t port);
  void on_packet(uint16_t port);
  // SYNs dropped before this process saw them (the kernel's first-SYN check): they count
  // toward the SYN rate that alarms, not toward any destination's.
  void on_syns_unseen(uint64_t count) { syn_.count(count); }
  // Closes every bin that ended by now_ms. Returns the last transition among them.
  Transition update(uint64_t now_ms);

  const FloodDetectorConfig& config() const { return config_; }
  const State& state() const { return state_; }
  bool alarmed() const { return state_.alarmed; }
  // Per destination, nullopt if not tracked.
  std::optional<RateSeries::State> packets_of(uint16_t port) const;
  std::optional<RateSeries::State> syns_of(uint16_t port) const;

 private:
  struct Destination {
    RateSeries packets;
    RateSeries syns;
  };
  Transition close_bin(uint64_t bin_end_ms);
  Destination* destination(uint16_t port);

  FloodDetectorConfig config_;
  RateSeries syn_;
  std::map<uint16_t, Destination> destinations_;
  State state_;
  bool started_ = false;
  uint64_t bin_start_ms_ = 0;
  uint64_t quiet_since_ms_ = 0;
  bool quiet_ = false;
};

}  // namespace roam::defense
