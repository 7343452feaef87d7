// The replay window: every counter once, reordering inside the window, stale and replayed
// counters refused without changing anything.
#include "crypto/replay_window.hpp"

#include <doctest/doctest.h>

#include <random>
#include <set>

namespace {

using roam::crypto::ReplayWindow;

TEST_CASE("each counter is accepted once, in any order inside the window") {
  ReplayWindow window;
  CHECK(window.accept(0));
  CHECK(window.accept(5));
  CHECK(window.accept(3));
  CHECK_FALSE(window.accept(3));
  CHECK_FALSE(window.accept(5));
  CHECK_FALSE(window.accept(0));
  CHECK(window.accept(4));
  CHECK(window.highest() == 5);
}

TEST_CASE("counters older than the window are refused as stale") {
  ReplayWindow window;
  CHECK(window.accept(10000));
  CHECK_FALSE(window.accept(10000 - ReplayWindow::window_bits));
  CHECK(window.accept(10000 - ReplayWindow::window_bits + 1));
  CHECK_FALSE(window.accept(0));
}

TEST_CASE("a long jump forgets nothing it should remember and remembers nothing stale") {
  ReplayWindow window;
  for (uint64_t i = 0; i < 100; ++i) CHECK(window.accept(i));
  CHECK(window.accept(1'000'000));
  CHECK_FALSE(window.accept(99));  // stale now
  CHECK(window.accept(999'999));   // inside the window, never seen
  CHECK_FALSE(window.accept(999'999));
}

TEST_CASE("a shuffled stream with duplicates matches a reference set") {
  std::mt19937_64 random(42);
  ReplayWindow window;
  std::set<uint64_t> seen;
  uint64_t highest = 0;
  bool any = false;
  for (int i = 0; i < 200000; ++i) {
    uint64_t base = static_cast<uint64_t>(i) * 3;
    uint64_t counter = base > 3000 ? base - random() % 3000 : random() % 3000;
    bool expected;
    if (any && counter <= highest && highest - counter >= ReplayWindow::window_bits) {
      expected = false;
    } else {
      expected = seen.insert(counter).second;
    }
    CHECK(window.accept(counter) == expected);
    if (expected && (!any || counter > highest)) highest = counter;
    any = any || expected;
  }
}

}  // namespace
