// Histogram: observations counted in buckets fixed at construction, with their count and
// sum: what a Prometheus histogram exposes (`_bucket{le=...}`, `_sum`, `_count`; see
// apps/metrics_text). Observing walks the bounds and allocates nothing, so owners can
// feed it per event on the loop thread (a move of 10000 connections: 10000 observations).
// Loop thread only.
#pragma once

#include <cstdint>
#include <vector>

namespace roam {

class Histogram {
 public:
  // `upper_bounds`: finite, ascending; the +Inf bucket is implied. Bounds out of order or
  // not finite are dropped (the buckets stay well-formed: each bound above the last).
  explicit Histogram(std::vector<double> upper_bounds);

  // Counts `value` in the first bucket whose bound is >= it (+Inf when none is). A NaN
  // is ignored: it belongs to no bucket and would poison the sum.
  void observe(double value);

  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Observations <= each bound, cumulative as Prometheus exposes them; one entry per
  // bound, then the +Inf bucket (which equals count()).
  std::vector<uint64_t> cumulative() const;
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;  // per bucket (not cumulative); the last is +Inf
  uint64_t count_ = 0;
  double sum_ = 0;
};

// The buckets of roamstack_changeover_seconds: 1 ms to 10 s. A move's changeover is a
// few ms on a quiet path (tools/bench handover), hundreds of ms for 1000 connections,
// seconds when retransmission timeouts are involved.
std::vector<double> changeover_seconds_buckets();

}  // namespace roam
