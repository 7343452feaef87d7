// Histogram: buckets, cumulative counts, sum and count; bad bounds and NaN.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "base/histogram.hpp"

namespace {

using roam::Histogram;

TEST_CASE("histogram: a value lands in the first bucket whose bound is >= it; counts are cumulative") {
  Histogram h({0.01, 0.1, 1});
  CHECK(h.count() == 0);
  CHECK(h.cumulative() == std::vector<uint64_t>{0, 0, 0, 0});
  h.observe(0.005);
  h.observe(0.01);  // on the bound: le="0.01" counts it
  h.observe(0.05);
  h.observe(2);  // above every bound: +Inf only
  CHECK(h.cumulative() == std::vector<uint64_t>{2, 3, 3, 4});
  CHECK(h.count() == 4);
  CHECK(h.sum() == doctest::Approx(2.065));
}

TEST_CASE("histogram: bounds out of order or not finite are dropped; NaN is not observed") {
  Histogram h({0.5, 0.1, std::numeric_limits<double>::infinity(), 1, 1, std::nan("")});
  CHECK(h.upper_bounds() == std::vector<double>{0.5, 1});
  h.observe(std::nan(""));
  CHECK(h.count() == 0);
  CHECK(h.sum() == 0);
  h.observe(-1);  // below every bound: the first bucket
  CHECK(h.cumulative() == std::vector<uint64_t>{1, 1, 1});
}

TEST_CASE("histogram: the changeover buckets run from 1 ms to 10 s, ascending") {
  auto bounds = roam::changeover_seconds_buckets();
  REQUIRE(bounds.size() >= 10);
  CHECK(bounds.front() == 0.001);
  CHECK(bounds.back() == 10);
  CHECK(Histogram(bounds).upper_bounds() == bounds);
}

}  // namespace
