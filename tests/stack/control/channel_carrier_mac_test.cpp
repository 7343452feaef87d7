// Tests for the segment MAC on a control channel's own connection
// (ChannelConnection::protect_carrier): once the Noise handshake is done and both HELLOs
// offer the capability, both ends sign and check the channel's segments, so a segment that
// TCP would take (the expected sequence number) but that no channel end sent is dropped
// before the channel sees it; without the capability the same segment makes the channel
// reset itself (why the protection exists).
#include <doctest/doctest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "crypto/identity_key.hpp"
#include "lwip/priv/tcp_priv.h"
#include "stack/control/channel_connection.hpp"
#include "stack/control/channel_server.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::LwipLab;

// Each case its own port: lwIP's pcb lists outlive a lab, and the last one's connection
// may still be closing.
uint16_t channel_port = 7101;

tcp_pcb* client_pcb(uint16_t local_port) {
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next)
    if (pcb->local_port == local_port && pcb->remote_port == channel_port) return pcb;
  return nullptr;
}

// 40 bytes "from the server" at exactly the sequence number the client expects next.
std::vector<uint8_t> in_window(const LwipLab& lab, const tcp_pcb* client) {
  wire::Ipv4TcpFields f;
  std::copy_n(lab.a().bytes.begin(), 4, f.src.begin());
  std::copy_n(lab.c().bytes.begin(), 4, f.dst.begin());
  f.src_port = client->remote_port;
  f.dst_port = client->local_port;
  f.seq = client->rcv_nxt;
  f.ack = client->snd_nxt;
  f.flags = wire::TcpSegmentView::ACK | wire::TcpSegmentView::PSH;
  f.window = 1000;
  std::vector<uint8_t> payload(40, 0xEE);
  payload[0] = 0;
  payload[1] = 38;  // a plausible frame length: the channel reads it as a frame
  std::vector<uint8_t> packet(wire::ipv4_tcp_packet_size(0, payload.size()));
  REQUIRE(wire::build_ipv4_tcp(packet, f, payload) == packet.size());
  return packet;
}

struct ClientEnd {
  bool established = false;
  bool closed = false;
  int bad_frames = 0;
  std::unique_ptr<ChannelConnection> connection;
};

void run_case(bool client_offers_mac) {
  ++channel_port;
  LwipLab lab(4, [](tcp_pcb*) { return false; });
  SegmentMacGuard guard(*lab.node);
  auto server_key = crypto::IdentityKey::generate();
  auto client_key = crypto::IdentityKey::generate();
  ChannelServer server(*lab.node, server_key, "a", channel_port, &guard);

  ClientEnd client;
  ChannelConnection::Callbacks callbacks;
  callbacks.on_established = [&](ChannelConnection&) { client.established = true; };
  callbacks.on_bad_frame = [&](ChannelConnection&, control::ChannelError) { ++client.bad_frames; };
  callbacks.on_closed = [&](ChannelConnection&, const std::string&) { client.closed = true; };
  client.connection = std::make_unique<ChannelConnection>(
      *lab.node,
      std::make_unique<control::ControlChannel>(
          crypto::NoisePattern::xx, crypto::NoiseRole::initiator, client_key,
          control::Hello{control::protocol_version, "client", client_offers_mac ? capability_segment_mac : 0, {}}),
      callbacks);
  auto tcp = TcpConnection::connect(lab.a(), channel_port, client.connection.get(), &lab.c());
  REQUIRE(tcp);
  client.connection->attach(std::move(tcp.value()), false);
  lab.run([&] { return client.established && server.counters().channels_established == 1; });
  REQUIRE(client.established);
  // Both ends of the one connection live in this one stack: two protected flows, or none.
  CHECK(guard.counters().protected_connections == (client_offers_mac ? 2u : 0u));

  tcp_pcb* pcb = client_pcb(client.connection->local_port());
  REQUIRE(pcb != nullptr);
  lab.inject(lab.c(), in_window(lab, pcb));
  lab.run([&] { return client.closed || guard.counters().dropped_missing > 0; });

  if (client_offers_mac) {
    CHECK(guard.counters().dropped_missing == 1);
    CHECK_FALSE(client.closed);
    CHECK(client.bad_frames == 0);
    // The channel still carries messages, signed both ways.
    CHECK(client.connection->send(control::RegisterConnections{{0x1234}}));
    lab.run([&] { return server.counters().registrations_pending == 1; });
    CHECK(server.counters().registrations_pending == 1);
    CHECK(guard.counters().verified_segments > 0);
  } else {
    CHECK(client.closed);  // the bytes reached the channel: forged, so it reset itself
    CHECK(client.bad_frames == 1);
  }
  client.connection.reset();
  server.shutdown();
  lab.run([] { return false; }, 4);
}

}  // namespace

TEST_CASE("channel carrier: with the capability at both ends an in-window segment never reaches the channel") {
  run_case(true);
}

TEST_CASE("channel carrier: without it the same segment makes the channel reset itself") {
  run_case(false);
}
