// The control port's authorization table: moves need an operator key, transfers a pool
// membership, status either an operator key or --status-open; replies are never requests.
#include "stack/migrate/control_access.hpp"

#include <doctest/doctest.h>

namespace {

using namespace roam::migrate;

TEST_CASE("control access: each role may do only its own requests") {
  ControlPeer anyone;
  ControlPeer operator_peer{true, false};
  ControlPeer member{false, true};

  CHECK(control_access(FrameType::migrate_request, anyone, true) == ControlAccess::needs_operator);
  CHECK(control_access(FrameType::migrate_request, member, true) == ControlAccess::needs_operator);
  CHECK(control_access(FrameType::migrate_request, operator_peer, false) == ControlAccess::allowed);

  CHECK(control_access(FrameType::session, anyone, true) == ControlAccess::needs_member);
  CHECK(control_access(FrameType::session, operator_peer, true) == ControlAccess::needs_member);
  CHECK(control_access(FrameType::session, member, false) == ControlAccess::allowed);
  // Only a pool member learns where a transfer's target lives.
  CHECK(control_access(FrameType::address_request, anyone, true) == ControlAccess::needs_member);
  CHECK(control_access(FrameType::address_request, operator_peer, true) == ControlAccess::needs_member);
  CHECK(control_access(FrameType::address_request, member, false) == ControlAccess::allowed);

  // Seed 004's Informer: an operator starts an inform; only a pool member ratifies (an
  // outsider's RATIFY would whitelist its own flood sources).
  CHECK(control_access(FrameType::inform_request, anyone, true) == ControlAccess::needs_operator);
  CHECK(control_access(FrameType::inform_request, member, true) == ControlAccess::needs_operator);
  CHECK(control_access(FrameType::inform_request, operator_peer, false) == ControlAccess::allowed);
  CHECK(control_access(FrameType::ratify, anyone, true) == ControlAccess::needs_member);
  CHECK(control_access(FrameType::ratify, operator_peer, true) == ControlAccess::needs_member);
  CHECK(control_access(FrameType::ratify, member, false) == ControlAccess::allowed);

  CHECK(control_access(FrameType::status_request, anyone, false) == ControlAccess::needs_operator);
  CHECK(control_access(FrameType::status_request, member, false) == ControlAccess::needs_operator);
  CHECK(control_access(FrameType::status_request, anyone, true) == ControlAccess::allowed);
  CHECK(control_access(FrameType::status_request, operator_peer, false) == ControlAccess::allowed);

  for (auto type : {FrameType::reply, FrameType::session_result})
    CHECK(control_access(type, ControlPeer{true, true}, true) == ControlAccess::not_a_request);
}

}  // namespace
