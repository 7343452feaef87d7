// The connection-id index against the real lwIP (the lab of tests/support): after every
// step of a connection's life (connect, accept, re-keying, import, parking, unparking,
// freezing, abort, reset by the peer, close through TIME_WAIT) find_pcb_by_connection_id
// answers what a walk of tcp_active_pcbs would, and forgets what lwIP freed.
#include "stack/connection_id.hpp"

#include <doctest/doctest.h>

#include <set>

#include "lwip/priv/tcp_priv.h"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "support/lwip_lab.hpp"
#include "support/server_move.hpp"

namespace {

using namespace roam;
using Lab = roam::testing::PeerLab;

// The answer of the walk the index replaces: every registered pcb with this id.
std::set<tcp_pcb*> walk(uint64_t id) {
  std::set<tcp_pcb*> found;
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next)
    if (connection_id(pcb) == id) found.insert(pcb);
  return found;
}

// The index answers one of the registered pcbs with the id, or nothing when the walk
// finds none.
void check_agrees(uint64_t id) {
  auto registered = walk(id);
  tcp_pcb* found = find_pcb_by_connection_id(id);
  INFO("registered with the id: ", registered.size());
  if (registered.empty()) {
    CHECK(found == nullptr);
  } else {
    CHECK(registered.count(found) == 1);
  }
}

TEST_CASE("the id index finds both ends of a lab connection and forgets an aborted one") {
  Lab lab;
  size_t before = indexed_connection_count();
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  tcp_pcb* server = lab.server.connection->pcb();
  uint64_t id = connection_id(client);
  REQUIRE(id != 0);
  CHECK(connection_id(server) == id);  // both ends computed the same id
  CHECK(indexed_connection_count() == before + 2);
  check_agrees(id);

  lab.server.connection->abort();  // tcp_abandon: the server end is freed at once
  CHECK(find_pcb_by_connection_id(id) == client);
  check_agrees(id);
  // The RST reaches the client: tcp_input frees its end too.
  lab.run([&] { return lab.client.failed; });
  CHECK(lab.client.failed);
  CHECK(find_pcb_by_connection_id(id) == nullptr);
  check_agrees(id);
  CHECK(indexed_connection_count() == before);
}

TEST_CASE("set_connection_id re-keys a registered pcb in the index") {
  Lab lab;
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  tcp_pcb* server = lab.server.connection->pcb();
  uint64_t id = connection_id(client);
  uint64_t other = id ^ 0x5a5a5a5a5a5a5a5aull;
  set_connection_id(client, other);
  CHECK(connection_id(client) == other);
  CHECK(find_pcb_by_connection_id(other) == client);
  CHECK(find_pcb_by_connection_id(id) == server);
  check_agrees(id);
  check_agrees(other);
  set_connection_id(client, 0);  // no id: found under none
  CHECK(connection_id(client) == 0);
  CHECK(find_pcb_by_connection_id(other) == nullptr);
  CHECK(find_pcb_by_connection_id(0) == nullptr);
}

TEST_CASE("an import is found only once registered, a frozen export not at all, a discarded one never again") {
  Lab lab;
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  uint64_t id = connection_id(client);
  size_t before = indexed_connection_count();

  // A freezes (leaves tcp_active_pcbs), B imports (the id set on an unregistered pcb)
  // and parks, A discards its frozen pcb.
  auto moved = roam::testing::move_server_end(lab, guard);
  CHECK(connection_id(moved.pcb) == id);
  CHECK(find_pcb_by_connection_id(id) == client);  // the parked import is not registered
  check_agrees(id);
  CHECK(indexed_connection_count() == before - 1);

  // Registered with lwIP, as the client's first packet on the new path would do.
  guard.unpark_all();
  CHECK(find_pcb_by_connection_id(id) == moved.pcb);  // the newest registered answers
  check_agrees(id);
  CHECK(indexed_connection_count() == before);

  // The import aborted: the client's end answers again.
  lab.server.connection->abort();
  CHECK(find_pcb_by_connection_id(id) == client);
  check_agrees(id);
}

TEST_CASE("a frozen pcb that thaws is found again") {
  Lab lab;
  lab.connect();
  tcp_pcb* server = lab.server.connection->pcb();
  tcp_pcb* client = lab.client.connection->pcb();
  uint64_t id = connection_id(server);
  migrate::freeze_pcb(server);
  CHECK(find_pcb_by_connection_id(id) == client);
  check_agrees(id);
  migrate::thaw_pcb(server);
  CHECK(find_pcb_by_connection_id(id) == server);
  check_agrees(id);
}

TEST_CASE("an unregistered import whose id changes is indexed under its final id when registered") {
  Lab lab;
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  uint64_t id = connection_id(lab.client.connection->pcb());
  auto moved = roam::testing::move_server_end(lab, guard);
  uint64_t renamed = id + 1;
  set_connection_id(moved.pcb, renamed);
  CHECK(find_pcb_by_connection_id(renamed) == nullptr);  // still parked
  guard.unpark_all();
  CHECK(find_pcb_by_connection_id(renamed) == moved.pcb);
  CHECK(find_pcb_by_connection_id(id) == lab.client.connection->pcb());
  check_agrees(renamed);
  check_agrees(id);
}

TEST_CASE("a connection closed both ways leaves the index (TIME_WAIT is not registered)") {
  Lab lab;
  size_t before = indexed_connection_count();
  lab.connect();
  uint64_t id = connection_id(lab.client.connection->pcb());
  lab.client.connection->shutdown_write();
  lab.run([&] { return lab.server.remote_closed; });
  lab.server.connection->close();
  lab.run([&] { return lab.client.remote_closed; });
  lab.client.connection->close();
  // The client's end went through FIN_WAIT to TIME_WAIT (off tcp_active_pcbs); the
  // server's through LAST_ACK until freed.
  lab.run([&] { return walk(id).empty(); }, 1000);
  CHECK(walk(id).empty());
  CHECK(find_pcb_by_connection_id(id) == nullptr);
  CHECK(indexed_connection_count() == before);
}

}  // namespace
