// Moves and dead-peer detection (stack/dead_peer.hpp, stack/migrate/pcb_migration.*),
// against the real lwIP: the time a connection spends frozen on its old server, or the
// silence of a server while it moves, is not the peer's silence. thaw_pcb and the
// client's rewrite_remote restart the count, so neither end gives up on a connection a
// move kept quiet for longer than the bound. Bounds here only stop hangs.
#include <doctest/doctest.h>

#include <span>

#include "stack/migrate/pcb_migration.hpp"
#include "stack/tcp_connection.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::PeerLab;

class PolicyScope {
 public:
  explicit PolicyScope(const DeadPeerPolicy& policy) : saved_(TcpConnection::dead_peer_policy()) {
    TcpConnection::set_dead_peer_policy(policy);
  }
  ~PolicyScope() { TcpConnection::set_dead_peer_policy(saved_); }

 private:
  DeadPeerPolicy saved_;
};

const DeadPeerPolicy fast{600, 300};

// Runs the lab for `ms` of loop time, or until either end failed.
void run_for(PeerLab& lab, uint64_t ms) {
  uint64_t until = uv_now(lab.node->loop()) + ms;
  lab.run([&] { return lab.client.failed || lab.server.failed || uv_now(lab.node->loop()) >= until; });
}

// The connection still carries bytes both ways.
void check_stream(PeerLab& lab) {
  lab.client.send("ping");
  lab.server.send("pong");
  lab.run([&] { return lab.server.received.size() >= 4 && lab.client.received.size() >= 4; });
  CHECK(lab.server.received.size() == 4);
  CHECK(lab.client.received.size() == 4);
}

TEST_CASE("a connection frozen for longer than the dead-peer bound is not given up when thawed") {
  PeerLab lab;
  lab.connect();  // no policy yet: the client end is never polled, only the server's
  PolicyScope scope(fast);
  lab.server.connection = std::make_unique<TcpConnection>(lab.server.connection->release(), &lab.server);
  tcp_pcb* pcb = lab.server.connection->pcb();
  migrate::freeze_pcb(pcb);
  run_for(lab, 3 * fast.dead_after_ms);
  migrate::thaw_pcb(pcb);
  // Without a restarted count the first poll after the thaw would find 1.8 s of silence.
  run_for(lab, fast.dead_after_ms / 2);
  CHECK_FALSE(lab.server.failed);
  CHECK(lab.server.connection->loss() == PeerLoss::none);
  check_stream(lab);
  CHECK_FALSE(lab.server.failed);
}

TEST_CASE("a client that follows an ACM counts its server's silence from the rewrite") {
  PolicyScope scope(fast);
  PeerLab lab;
  lab.connect();
  // The server end stays quiet while it "moves": frozen, and nothing reaches it (the old
  // host's MigrationGuard would drop the client's packets).
  tcp_pcb* server_pcb = lab.server.connection->pcb();
  migrate::freeze_pcb(server_pcb);
  lab.lose = [&](std::span<const uint8_t> packet) { return IpAddress::destination_of(packet) == lab.a(); };
  run_for(lab, fast.dead_after_ms * 7 / 10);
  REQUIRE_FALSE(lab.client.failed);
  // The ACM arrives: the client points the connection at the (same) server again.
  tcp_pcb* client_pcb = lab.client.connection->pcb();
  migrate::rewrite_remote(std::span<tcp_pcb* const>(&client_pcb, 1), lab.a(), 0, false);
  run_for(lab, fast.dead_after_ms * 7 / 10);  // 1.4 bounds of silence in all
  CHECK_FALSE(lab.client.failed);
  // The move completes: the server end runs again and the stream goes on.
  lab.lose = nullptr;
  migrate::thaw_pcb(server_pcb);
  check_stream(lab);
  CHECK_FALSE(lab.client.failed);
  CHECK_FALSE(lab.server.failed);
}

}  // namespace
