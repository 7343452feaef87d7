// Moving a live lwIP connection between addresses, against the real lwIP: one Node holds a
// client address C and two server addresses A and B on three fake links; the test carries
// every packet to the link that owns its destination. The server end moves from A to B
// through a snapshot (encoded and decoded), the client follows, and the byte streams in
// both directions must stay exact. Also: a failed import resumes on the old path, silenced
// flows die without RST, parked flows stay quiet until the client arrives.
#include "stack/migrate/pcb_migration.hpp"

#include <doctest/doctest.h>

#include <random>

#include "lwip/priv/tcp_priv.h"
#include "stack/lwip_address.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"
#include "stack/tcp_listener.hpp"
#include "stack/wire/connection_snapshot.hpp"
#include "support/lwip_lab.hpp"
#include "support/server_move.hpp"

namespace {

using namespace roam;

using roam::testing::LabPeer;
using roam::testing::LwipLab;
using roam::testing::pattern;

// The lab with the server end of the connection kept as `server`.
using Lab = roam::testing::PeerLab;


// The client follows: rewrite, and silence the old flow so late packets die quietly.
size_t follow(Lab& lab, migrate::MigrationGuard& guard, const IpAddress& from, const IpAddress& to) {
  auto old_flows = migrate::rewrite_remote(from, 7000, to, 0);
  for (const auto& flow : old_flows) guard.silence(flow);
  (void)lab;
  return old_flows.size();
}

// Moves the server end from A to B the way two hosts would, through the encoded
// snapshot; the client follows.
void move_server(Lab& lab, migrate::MigrationGuard& guard) {
  roam::testing::move_server_end(lab, guard);
  CHECK(follow(lab, guard, lab.a(), lab.b()) == 1);
}

// The client's pokes, as the Follower's ChangeoverTracker makes them: the new server stays
// parked (silent) until a packet of the client reaches it, and a client with nothing
// unacknowledged sends exactly one on follow (restart_transmission's ACK). When the path
// loses that one, nothing else would ever reach B and both ends would wait for good. So
// restart the client's transmission until B has heard from it, at most 10 times.
void poke_until_heard(Lab& lab, migrate::MigrationGuard& guard) {
  for (int poke = 0; guard.counters().unparked == 0; ++poke) {
    lab.run([&] { return guard.counters().unparked != 0; }, 4);
    if (guard.counters().unparked != 0 || poke == 10) break;
    migrate::restart_transmission(lab.client.connection->pcb());
  }
  CHECK(guard.counters().unparked == 1);
}

// Links like TUN devices with TSO: 64 KiB segments, checksums completed by the "device".
constexpr LinkOffloads tso{65435, true};

void transfer_across_a_move(int family, LinkOffloads offloads = {}) {
  Lab lab(family, offloads);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  lab.server.to_send = pattern(3 << 20, 1);
  lab.client.to_send = pattern(2 << 20, 2);
  lab.server.pump();
  lab.client.pump();
  // Move mid-stream, in both directions at once.
  lab.run([&] { return lab.client.received.size() > (1 << 20) && lab.server.received.size() > (512 << 10); });
  REQUIRE(lab.client.received.size() < lab.server.to_send.size());
  move_server(lab, guard);
  lab.run([&] {
    return lab.client.received.size() == lab.server.to_send.size() &&
           lab.server.received.size() == lab.client.to_send.size();
  });
  INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size(), "; server received ",
       lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(lab.server.received == lab.client.to_send);
  CHECK_FALSE(lab.client.failed);
  CHECK_FALSE(lab.server.failed);
  CHECK(lab.rst_seen == 0);
  CHECK(guard.counters().unparked == 1);
  // The server end now lives at B.
  CHECK(from_lwip(lab.server.connection->pcb()->local_ip) == lab.b());
  CHECK(from_lwip(lab.client.connection->pcb()->remote_ip) == lab.b());
}

TEST_CASE("a connection whose server end moves to another address keeps both byte streams exact (IPv4)") {
  transfer_across_a_move(4);
}

TEST_CASE("a connection whose server end moves to another address keeps both byte streams exact (IPv6)") {
  transfer_across_a_move(6);
}

TEST_CASE("a connection moves byte-exact over TSO links, where segments span many ACKs") {
  // Multi-MSS segments are often partly acknowledged when captured: the capture must
  // order them by signed distance from snd_una, and the importer must send from there.
  transfer_across_a_move(4, tso);
  transfer_across_a_move(6, tso);
}

void move_with_loss(LinkOffloads offloads) {
  Lab lab(4, offloads);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  std::mt19937 random(7);
  lab.lose = [&random](std::span<const uint8_t>) { return random() % 100 < 5; };
  lab.server.to_send = pattern(1 << 20, 3);
  lab.client.to_send = pattern(512 << 10, 4);
  lab.server.pump();
  lab.client.pump();
  lab.run([&] { return lab.client.received.size() > (300 << 10); });
  move_server(lab, guard);
  // The client often has sent all it had by now: then its one ACK on follow may be lost.
  poke_until_heard(lab, guard);
  lab.run([&] {
    return lab.client.received.size() == lab.server.to_send.size() &&
           lab.server.received.size() == lab.client.to_send.size();
  });
  INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size(), "; server received ",
       lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(lab.server.received == lab.client.to_send);
  CHECK(lab.rst_seen == 0);
}

TEST_CASE("a move survives 5% loss on the path") {
  move_with_loss({});
}

TEST_CASE("a move survives 5% loss on the path over TSO links") {
  move_with_loss(tso);
}

TEST_CASE("a client whose only packet on the new path is lost reaches the parked server by poking") {
  // What made "a move survives 5% loss" stall now and then: all the client's data was
  // acknowledged, so following sent one ACK to B, the path lost it, and B stayed parked
  // (never sending) while the client waited for data.
  Lab lab(4, tso);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  lab.server.to_send = pattern(1 << 20, 9);
  lab.server.pump();
  lab.run([&] { return lab.client.received.size() > (300 << 10); });
  REQUIRE(lab.client.connection->pcb()->unacked == nullptr);
  REQUIRE(lab.client.connection->pcb()->unsent == nullptr);
  size_t lost = 0;
  lab.lose = [&](std::span<const uint8_t> packet) {
    if (!(IpAddress::destination_of(packet) == lab.b()) || lost != 0) return false;
    ++lost;
    return true;
  };
  move_server(lab, guard);
  poke_until_heard(lab, guard);
  CHECK(lost == 1);
  lab.run([&] { return lab.client.received.size() == lab.server.to_send.size(); });
  INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size());
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(lab.rst_seen == 0);
}

TEST_CASE("a failed import leaves the connection on its old path, exactly as it was") {
  Lab lab(4);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  lab.server.to_send = pattern(1 << 20, 5);
  lab.server.pump();
  lab.run([&] { return lab.client.received.size() > (256 << 10); });
  tcp_pcb* pcb = lab.server.connection->pcb();
  uint32_t snd_nxt = pcb->snd_nxt, rcv_nxt = pcb->rcv_nxt, lastack = pcb->lastack;
  migrate::freeze_pcb(pcb);
  auto key = flow_of(pcb);
  guard.silence(key);
  auto snapshot = migrate::capture_snapshot(pcb, {}, {});
  REQUIRE(snapshot);
  // The new host cannot take it: its address is of the other family.
  auto imported = migrate::import_pcb(*snapshot, *IpAddress::parse("2001:db8:13::2"));
  REQUIRE_FALSE(imported);
  CHECK(pcb->snd_nxt == snd_nxt);
  CHECK(pcb->rcv_nxt == rcv_nxt);
  CHECK(pcb->lastack == lastack);
  guard.unsilence(key);
  migrate::thaw_pcb(pcb);
  lab.run([&] { return lab.client.received.size() == lab.server.to_send.size(); });
  INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size(), "; server received ",
       lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(lab.rst_seen == 0);
  CHECK(from_lwip(lab.server.connection->pcb()->local_ip) == lab.a());
}

TEST_CASE("while frozen, the old server drops the flow's packets without answering RST") {
  Lab lab(4);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  tcp_pcb* pcb = lab.server.connection->pcb();
  migrate::freeze_pcb(pcb);
  guard.silence(flow_of(pcb));
  lab.client.to_send = pattern(64 << 10, 6);
  lab.client.pump();
  lab.run([&] { return guard.counters().silenced_input_drops >= 3; });
  CHECK(guard.counters().silenced_input_drops >= 3);
  CHECK(lab.rst_seen == 0);
  CHECK(lab.server.received.empty());
  // And it resumes: the client's retransmissions get through once thawed.
  guard.unsilence(flow_of(pcb));
  migrate::thaw_pcb(pcb);
  lab.run([&] { return lab.server.received.size() == lab.client.to_send.size(); });
  INFO("server received ", lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.server.received == lab.client.to_send);
}

TEST_CASE("an imported connection stays silent until the client reaches it on the new path") {
  Lab lab(4);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  lab.server.to_send = pattern(256 << 10, 8);
  lab.server.pump();
  lab.run([&] { return lab.client.received.size() > (64 << 10); });
  tcp_pcb* old_pcb = lab.server.connection->pcb();
  migrate::freeze_pcb(old_pcb);
  guard.silence(flow_of(old_pcb));
  lab.run([] { return false; }, 50);  // what A sent before the freeze arrives
  auto snapshot = migrate::capture_snapshot(old_pcb, {}, {});
  REQUIRE(snapshot);
  auto imported = migrate::import_pcb(*snapshot, lab.b());
  REQUIRE(imported);
  migrate::discard_frozen_pcb(lab.server.connection->release());
  lab.server.connection = std::make_unique<TcpConnection>(*imported, &lab.server);
  guard.park(flow_of(*imported), *imported);
  lab.server.pump();  // the app writes: nothing may leave yet
  size_t before = lab.client.received.size();
  lab.run([] { return false; }, 50);
  CHECK(lab.client.received.size() == before);
  CHECK(guard.counters().parked_output_drops > 0);
  CHECK(lab.rst_seen == 0);
  CHECK(follow(lab, guard, lab.a(), lab.b()) == 1);
  lab.run([&] { return lab.client.received.size() == lab.server.to_send.size(); });
  INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size(), "; server received ",
       lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(guard.counters().unparked == 1);
}

TEST_CASE("rewrite_local rebinds a host's connections to its new address") {
  Lab lab(4);
  lab.connect();
  lab.client.to_send = pattern(128 << 10, 9);
  lab.client.pump();
  lab.run([&] { return lab.server.received.size() > (32 << 10); });
  // The server host's address A becomes B: its pcb is rebound, the client follows.
  migrate::MigrationGuard guard(*lab.node);
  for (const auto& flow : migrate::rewrite_local(lab.a(), lab.b())) guard.silence(flow);
  CHECK(follow(lab, guard, lab.a(), lab.b()) == 1);
  lab.run([&] { return lab.server.received.size() == lab.client.to_send.size(); });
  CHECK(lab.server.received == lab.client.to_send);
  CHECK(lab.rst_seen == 0);
}

TEST_CASE("connections that are not established cannot be captured") {
  Lab lab(4);
  tcp_pcb* pcb = tcp_new();
  REQUIRE(pcb != nullptr);
  CHECK_FALSE(migrate::check_movable(pcb));
  CHECK_FALSE(migrate::capture_snapshot(pcb, {}, {}));
  tcp_close(pcb);
}

}  // namespace
