// Moves a MovableSession's connection from A to B inside an LwipLab the way two servers
// would: freeze the session and its pcb, capture a snapshot (encoded and decoded), import it
// at B, rebuild the session with make_movable_session, park the pcb, and let the client
// follow. Loop thread only.
#pragma once

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "apps/builtin_sessions.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/wire/connection_snapshot.hpp"
#include "support/lwip_lab.hpp"

namespace roam::testing {

struct MovedSession {
  std::unique_ptr<MovableSession> session;
  wire::ConnectionSnapshot snapshot;  // as the new host decoded it
};

// `session` is released and destroyed; the rebuilt one at B is returned.
inline MovedSession move_session(LwipLab& lab, migrate::MigrationGuard& guard, std::unique_ptr<MovableSession>& session,
                                 const SessionContext& context, MovableSession::FinishedFn on_finished) {
  MovedSession out;
  REQUIRE(session->movable());
  tcp_pcb* old_pcb = session->legs().front().pcb;
  REQUIRE(migrate::check_movable(old_pcb));
  session->freeze();
  migrate::freeze_pcb(old_pcb);
  guard.silence(flow_of(old_pcb));
  auto captured = migrate::capture_snapshot(old_pcb, session->leg_received(0), session->leg_app_state(0));
  REQUIRE_MESSAGE(captured, (captured ? "" : captured.error()));
  auto decoded = wire::decode_snapshot(wire::encode_snapshot(*captured));
  REQUIRE(decoded);
  out.snapshot = *decoded;
  auto imported = migrate::import_pcb(*decoded, lab.b());
  REQUIRE_MESSAGE(imported, (imported ? "" : imported.error()));
  std::string error;
  // The importer's order: the session first, then the pcb is parked.
  out.session = make_movable_session(session->kind(), context, *imported, decoded->received, decoded->app_state,
                                     std::move(on_finished), error);
  REQUIRE_MESSAGE(out.session, error);
  migrate::discard_frozen_pcb(session->release_legs().front());
  session.reset();
  guard.park(flow_of(*imported), *imported);
  auto old_flows = migrate::rewrite_remote(lab.a(), lab_port, lab.b(), 0);
  CHECK(old_flows.size() == 1);
  for (const auto& flow : old_flows) guard.silence(flow);
  return out;
}

}  // namespace roam::testing
