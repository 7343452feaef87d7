// When a pool member hands its sessions to the active member (apps/roam_move_plan): at
// the boundary after its epoch, never while active or empty, again after a failure or
// for late arrivals (at most every retry_ms), not again for sessions that stayed.
#include "apps/roam_move_plan.hpp"

#include <doctest/doctest.h>

using roam::RoamMovePlan;
using roam::RoamMoveView;

namespace {

RoamMoveView view(uint64_t now, uint64_t epoch, uint32_t active, size_t sessions, bool moving = false) {
  return RoamMoveView{now, epoch, active, sessions, moving};
}

}  // namespace

TEST_CASE("roam move plan: the active member and an empty member move nothing") {
  RoamMovePlan plan(1);
  CHECK_FALSE(plan.next(view(0, 1, 1, 5)).has_value());   // active: its sessions stay
  CHECK_FALSE(plan.next(view(10, 2, 0, 0)).has_value());  // standby, nothing held
  CHECK_FALSE(plan.next(view(20, 0, 0, 3)).has_value());  // no epoch (pool not started)
  CHECK_FALSE(plan.next(view(30, 3, 2, 3, true)).has_value());  // a move is running
}

TEST_CASE("roam move plan: at the boundary the sessions go to the new active member, once") {
  RoamMovePlan plan(1);
  CHECK_FALSE(plan.next(view(0, 1, 1, 2)).has_value());
  auto target = plan.next(view(2000, 2, 0, 2));
  REQUIRE(target.has_value());
  CHECK(*target == 0);
  CHECK_FALSE(plan.next(view(2010, 2, 0, 2)).has_value());  // running
  plan.finished(2050, 2, 0, false);
  CHECK_FALSE(plan.next(view(4000, 2, 0, 0)).has_value());
  // The same member active again in the next epoch: it holds nothing, nothing moves.
  CHECK_FALSE(plan.next(view(4000, 3, 1, 0)).has_value());
}

TEST_CASE("roam move plan: a failed move is tried again after retry_ms, in the same epoch") {
  RoamMovePlan plan(0, 1000);
  REQUIRE(plan.next(view(100, 5, 2, 3)).has_value());
  plan.finished(200, 3, 3, true);
  CHECK_FALSE(plan.next(view(900, 5, 2, 3)).has_value());
  auto again = plan.next(view(1200, 5, 2, 3));
  REQUIRE(again.has_value());
  CHECK(*again == 2);
  plan.finished(1300, 3, 0, false);
  CHECK_FALSE(plan.next(view(5000, 5, 2, 0)).has_value());
}

TEST_CASE("roam move plan: sessions that stayed do not retry; a late arrival does") {
  RoamMovePlan plan(0, 1000);
  REQUIRE(plan.next(view(0, 7, 1, 2)).has_value());
  plan.finished(10, 2, 1, false);                            // one unmovable session stayed
  CHECK_FALSE(plan.next(view(5000, 7, 1, 1)).has_value());  // the same one: no retry
  auto late = plan.next(view(6000, 7, 1, 2));                // a new session arrived
  REQUIRE(late.has_value());
  CHECK(*late == 1);
  plan.finished(6010, 2, 1, false);
  // The next epoch: one attempt again, whatever stayed before.
  REQUIRE(plan.next(view(8000, 8, 2, 1)).has_value());
}

TEST_CASE("roam move plan: a member a session was resumed away from is no target until its avoidance ends") {
  RoamMovePlan plan(1);
  plan.avoid(0, 1000);  // a client left member 0 for dead; its session was rebuilt here
  CHECK_FALSE(plan.next(view(1500, 3, 0, 1)).has_value());  // member 0 active: the session stays
  CHECK_FALSE(plan.next(view(1000 + RoamMovePlan::avoid_ms - 1, 4, 0, 1)).has_value());
  auto other = plan.next(view(1000 + RoamMovePlan::avoid_ms - 1, 5, 2, 1));  // another member: moves
  REQUIRE(other.has_value());
  CHECK(*other == 2);
  plan.finished(1000 + RoamMovePlan::avoid_ms, 1, 1, true);
  // Avoidance over: moved at the next look.
  auto again = plan.next(view(1000 + RoamMovePlan::avoid_ms + 2000, 6, 0, 1));
  REQUIRE(again.has_value());
  CHECK(*again == 0);
  plan.avoid(1, 0);  // itself: ignored
  plan.finished(1000 + RoamMovePlan::avoid_ms + 2001, 1, 0, false);
  CHECK_FALSE(plan.next(view(1000 + RoamMovePlan::avoid_ms + 4000, 7, 1, 1)).has_value());  // active
}
