// ChangeoverTracker's outcomes as counted for metrics: each moved connection heard from on
// the new path is counted and observed in the changeover histogram (seconds since its
// batch's ACM); one that ends unheard is counted, not observed.
#include <doctest/doctest.h>

#include <vector>

#include "stack/migrate/changeover_tracker.hpp"

namespace {

using roam::FlowKey;
using roam::migrate::ChangeoverReport;
using roam::migrate::ChangeoverTracker;

FlowKey flow(uint16_t port) {
  FlowKey key{};
  key.local_port = port;
  key.remote_port = 7000;
  return key;
}

TEST_CASE("changeover tracker: heard connections feed the histogram, unheard ones only the counters") {
  std::vector<ChangeoverReport> settled;
  ChangeoverTracker tracker([&](const ChangeoverReport& r) { settled.push_back(r); });
  const uint64_t acm_ns = 1'000'000'000;
  uint64_t batch = tracker.open_batch("198.18.13.2", 3, acm_ns);
  tracker.await(flow(1), batch, acm_ns);
  tracker.await(flow(2), batch, acm_ns);
  tracker.await(flow(3), batch, acm_ns);
  tracker.heard(flow(1), acm_ns + 3'000'000);    // 3 ms
  tracker.heard(flow(2), acm_ns + 700'000'000);  // 0.7 s
  tracker.heard(flow(2), acm_ns + 800'000'000);  // again: already counted
  CHECK(tracker.changeover_seconds().count() == 2);
  CHECK(tracker.changeover_seconds().sum() == doctest::Approx(0.703));
  CHECK(tracker.counters().heard == 2);
  CHECK(settled.empty());
  tracker.gone(flow(3), acm_ns + 900'000'000);
  CHECK(tracker.counters().unheard == 1);
  CHECK(tracker.changeover_seconds().count() == 2);
  REQUIRE(settled.size() == 1);
  CHECK(settled[0].heard == 2);
  CHECK(settled[0].unheard == 1);
  // Bucketed: 3 ms is under le=0.005, 0.7 s under le=1 and not under le=0.5.
  const auto& bounds = tracker.changeover_seconds().upper_bounds();
  auto cumulative = tracker.changeover_seconds().cumulative();
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (bounds[i] == 0.0025) CHECK(cumulative[i] == 0);
    if (bounds[i] == 0.005) CHECK(cumulative[i] == 1);
    if (bounds[i] == 0.5) CHECK(cumulative[i] == 1);
    if (bounds[i] == 1) CHECK(cumulative[i] == 2);
  }
}

}  // namespace
