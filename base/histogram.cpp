#include "base/histogram.hpp"

#include <cmath>

namespace roam {

Histogram::Histogram(std::vector<double> upper_bounds) {
  for (double bound : upper_bounds) {
    if (!std::isfinite(bound) || (!bounds_.empty() && bound <= bounds_.back())) continue;
    bounds_.push_back(bound);
  }
  buckets_.assign(bounds_.size() + 1, 0);
}

void Histogram::observe(double value) {
  if (std::isnan(value)) return;
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  ++buckets_[i];
  ++count_;
  sum_ += value;
}

std::vector<uint64_t> Histogram::cumulative() const {
  std::vector<uint64_t> out;
  out.reserve(buckets_.size());
  uint64_t total = 0;
  for (uint64_t n : buckets_) out.push_back(total += n);
  return out;
}

std::vector<double> changeover_seconds_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace roam
