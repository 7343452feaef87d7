// The control pool's pure decisions: when an idle cached control connection is pinged or
// dropped, and how a target opened in advance backs off.
#include "stack/migrate/control_pool.hpp"

#include <doctest/doctest.h>

using roam::migrate::ControlPoolLimits;
using roam::migrate::idle_action;
using roam::migrate::IdleAction;
using roam::migrate::reconnect_delay_ms;

TEST_CASE("control pool: an idle connection is pinged once idle long enough, dropped when the ping goes unanswered") {
  ControlPoolLimits limits;
  limits.ping_after_ms = 15'000;
  limits.ping_timeout_ms = 5'000;
  CHECK(idle_action(1'000, 1'000, std::nullopt, limits) == IdleAction::none);
  CHECK(idle_action(15'999, 1'000, std::nullopt, limits) == IdleAction::none);
  CHECK(idle_action(16'000, 1'000, std::nullopt, limits) == IdleAction::ping);
  // A ping outstanding: no second one, dropped only at its timeout.
  CHECK(idle_action(20'999, 1'000, 16'000, limits) == IdleAction::none);
  CHECK(idle_action(21'000, 1'000, 16'000, limits) == IdleAction::drop);
  // A clock that reads earlier than the stamps (loop time is monotonic, but a stamp may be
  // taken after the check's `now`): never a wrap-around to "idle for ages".
  CHECK(idle_action(500, 1'000, std::nullopt, limits) == IdleAction::none);
  CHECK(idle_action(500, 1'000, 1'000, limits) == IdleAction::none);
}

TEST_CASE("control pool: reconnect backoff doubles from 1 s and stops at 60 s") {
  CHECK(reconnect_delay_ms(0) == 0);
  CHECK(reconnect_delay_ms(1) == 1'000);
  CHECK(reconnect_delay_ms(2) == 2'000);
  CHECK(reconnect_delay_ms(3) == 4'000);
  CHECK(reconnect_delay_ms(6) == 32'000);
  CHECK(reconnect_delay_ms(7) == 60'000);
  CHECK(reconnect_delay_ms(1'000'000) == 60'000);
}
