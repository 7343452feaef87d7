// SegmentMacGuard against the real lwIP (tests/support/lwip_lab.hpp: client C and server A
// in one stack): with both ends protected, a transfer both ways is byte-exact and every
// segment is signed and verified; a forged segment that TCP itself would accept (right
// sequence numbers, valid checksum) is dropped for a wrong or missing MAC and the stream
// stays exact; a guard on a link with offloads is refused.
#include "stack/control/segment_mac_guard.hpp"

#include <doctest/doctest.h>

#include "apps/cli.hpp"
#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/wire/segment_mac_option.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using namespace roam::testing;

using Lab = PeerLab;

std::array<uint8_t, 64> session_hash() {
  std::array<uint8_t, 64> h{};
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(i * 3 + 1);
  return h;
}

// A data segment "from the server" to the client at exactly the sequence number the client
// expects: TCP would take it. `mac` chooses what it carries: none, or a made-up tag.
std::vector<uint8_t> injected(const Lab& lab, const tcp_pcb* client, bool with_mac) {
  wire::Ipv4TcpFields f;
  std::copy_n(lab.a().bytes.begin(), 4, f.src.begin());
  std::copy_n(lab.c().bytes.begin(), 4, f.dst.begin());
  f.src_port = client->remote_port;
  f.dst_port = client->local_port;
  f.seq = client->rcv_nxt;
  f.ack = client->snd_nxt;
  f.flags = wire::TcpSegmentView::ACK | wire::TcpSegmentView::PSH;
  f.window = 1000;
  const std::vector<uint8_t> option = {253, 16, 0x52, 0x53, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
  if (with_mac) f.options = option;
  std::vector<uint8_t> payload(100, 0xEE);
  std::vector<uint8_t> packet(wire::ipv4_tcp_packet_size(f.options.size(), payload.size()));
  REQUIRE(wire::build_ipv4_tcp(packet, f, payload) == packet.size());
  return packet;
}

TEST_CASE("protected both ways: byte-exact, every segment signed and verified; forgeries dropped") {
  Lab lab;
  SegmentMacGuard guard(*lab.node);
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  tcp_pcb* server = lab.server.connection->pcb();
  REQUIRE(connection_id(client) == connection_id(server));
  guard.protect(client, connection_id(client), session_hash(), crypto::SegmentDirection::client_to_server);
  guard.protect(server, connection_id(server), session_hash(), crypto::SegmentDirection::server_to_client);

  auto up = pattern(300'000, 1), down = pattern(200'000, 2);
  lab.client.send(up);
  lab.server.send(down);
  lab.run([&] { return lab.server.received.size() == up.size() && lab.client.received.size() == down.size(); });
  CHECK(lab.server.received == up);
  CHECK(lab.client.received == down);
  lab.run([] { return false; }, 10);  // the last ACKs in flight
  const auto& c = guard.counters();
  CHECK(c.signed_segments > 100);
  CHECK(c.verified_segments == c.signed_segments);  // nothing lost on this path
  CHECK(c.dropped_bad == 0);
  CHECK(c.dropped_missing == 0);
  CHECK(lab.largest_packet <= 1500);  // the option fits: lwIP's MSS left room for it

  // In-window forgeries: one with a made-up MAC, one with none.
  uint32_t rcv_nxt = client->rcv_nxt;
  lab.inject(lab.c(), injected(lab, client, true));
  lab.inject(lab.c(), injected(lab, client, false));
  lab.run([] { return false; }, 5);
  CHECK(guard.counters().dropped_bad == 1);
  CHECK(guard.counters().dropped_missing == 1);
  CHECK(client->rcv_nxt == rcv_nxt);
  CHECK(lab.client.received == down);

  // And the genuine stream goes on.
  auto more = pattern(50'000, 3);
  lab.server.send(more);
  lab.run([&] { return lab.client.received.size() == down.size() + more.size(); });
  down.insert(down.end(), more.begin(), more.end());
  CHECK(lab.client.received == down);

  // Unprotected flows pass untouched; a forgotten flow is no longer checked.
  guard.forget(flow_of(client));
  CHECK_FALSE(guard.is_protected(flow_of(client)));
}

TEST_CASE("the same forgery without the guard corrupts the stream (why the option exists)") {
  Lab lab;
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  lab.inject(lab.c(), injected(lab, client, false));
  lab.run([] { return false; }, 5);
  CHECK(lab.client.received == std::vector<uint8_t>(100, 0xEE));  // taken as the server's bytes
}

TEST_CASE("a guard refuses a link with offloads") {
  LwipLab lab(
      4, [](tcp_pcb*) { return false; }, LinkOffloads{65000, true});
  CHECK_THROWS_AS(SegmentMacGuard(*lab.node), ConfigError);
}

}  // namespace
