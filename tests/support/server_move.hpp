// The server half of a move in the lwIP lab (tests/support/lwip_lab.hpp), as two hosts
// would do it: A freezes its end of the connection and silences the flow, captures a
// snapshot, which goes through its encoding; B imports it with its own address and parks
// it until the client arrives; A frees its pcb. The client's half is the test's own.
// Loop thread only.
#pragma once

#include <doctest/doctest.h>

#include <memory>

#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/tcp_connection.hpp"
#include "stack/wire/connection_snapshot.hpp"
#include "support/lwip_lab.hpp"

namespace roam::testing {

struct MovedServerEnd {
  tcp_pcb* pcb;                       // imported at B, parked
  FlowKey parked;            // its flow as B sees it
  wire::ConnectionSnapshot snapshot;  // what A captured
};

inline MovedServerEnd move_server_end(PeerLab& lab, migrate::MigrationGuard& guard) {
  tcp_pcb* old_pcb = lab.server.connection->pcb();
  REQUIRE(migrate::check_movable(old_pcb));
  migrate::freeze_pcb(old_pcb);
  guard.silence(flow_of(old_pcb));
  auto snapshot = migrate::capture_snapshot(old_pcb, {}, {});
  REQUIRE_MESSAGE(snapshot, (snapshot ? "" : snapshot.error()));
  auto decoded = wire::decode_snapshot(wire::encode_snapshot(*snapshot));
  REQUIRE(decoded);
  auto imported = migrate::import_pcb(*decoded, lab.b());
  REQUIRE_MESSAGE(imported, (imported ? "" : imported.error()));
  migrate::discard_frozen_pcb(lab.server.connection->release());
  lab.server.connection = std::make_unique<TcpConnection>(*imported, &lab.server);
  FlowKey parked = flow_of(*imported);
  guard.park(parked, *imported);
  return {*imported, parked, std::move(*decoded)};
}

}  // namespace roam::testing
