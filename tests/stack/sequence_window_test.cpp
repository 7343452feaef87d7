// The Node's sequence check (stack/sequence_window.hpp, issue 16): a segment of a
// connection lwIP holds whose sequence number is far from what lwIP expects is dropped
// before lwIP and counted in the window stage; one near it (a retransmission of bytes
// already received, or just ahead) reaches lwIP as before; SYNs and segments of unknown
// flows are not checked.
#include "stack/sequence_window.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "lwip/priv/tcp_priv.h"
#include "stack/node.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using wire::TcpSegmentView;

std::vector<uint8_t> segment_from_client(const testing::PeerLab& lab, const tcp_pcb* client, uint32_t seq,
                                         uint8_t flags, size_t payload_size, uint16_t src_port = 0) {
  wire::Ipv4TcpFields f;
  std::copy_n(lab.c().bytes.begin(), 4, f.src.begin());
  std::copy_n(lab.a().bytes.begin(), 4, f.dst.begin());
  f.src_port = src_port != 0 ? src_port : client->local_port;
  f.dst_port = client->remote_port;
  f.seq = seq;
  f.ack = client->rcv_nxt;
  f.flags = flags;
  f.window = 1000;
  std::vector<uint8_t> payload(payload_size, 0xAB);
  std::vector<uint8_t> packet(wire::ipv4_tcp_packet_size(0, payload.size()));
  REQUIRE(wire::build_ipv4_tcp(packet, f, payload) == packet.size());
  return packet;
}

uint64_t window_drops(const Node& node) {
  return node.counters().rx_filtered_by_stage[static_cast<size_t>(InputStage::window)];
}

}  // namespace

TEST_CASE("sequence_near: within the zone either side of what is expected, across the wrap") {
  CHECK(sequence_near(1000, 1000));
  CHECK(sequence_near(1000 + sequence_zone, 1000));
  CHECK_FALSE(sequence_near(1000 + sequence_zone + 1, 1000));
  CHECK(sequence_near(1000 - sequence_zone, 1000));  // wraps below zero
  CHECK_FALSE(sequence_near(1000 - sequence_zone - 1, 1000));
  CHECK(sequence_near(5, 0xFFFFFFF0u));  // ahead across the wrap
  CHECK_FALSE(sequence_near(0x80000000u, 0));
  CHECK(sequence_zone >= TCP_WND);
}

TEST_CASE("a blind forgery far outside the window is dropped before lwIP, counted; near ones reach lwIP") {
  testing::PeerLab lab;
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  tcp_pcb* server = lab.server.connection->pcb();
  auto data = testing::pattern(5'000, 3);
  lab.client.send(data);
  lab.run([&] { return lab.server.received.size() == data.size(); });
  const uint32_t expected = server->rcv_nxt;
  const uint64_t rx_before = lab.node->counters().rx_filtered;

  // Far: half the sequence space away, with and without payload, and a far RST.
  lab.inject(lab.a(),
             segment_from_client(lab, client, expected + 0x80000000u, TcpSegmentView::ACK | TcpSegmentView::PSH, 83));
  lab.inject(lab.a(), segment_from_client(lab, client, expected + sequence_zone + 1, TcpSegmentView::ACK, 0));
  lab.inject(lab.a(), segment_from_client(lab, client, expected - sequence_zone - 1, TcpSegmentView::RST, 0));
  lab.run([] { return false; }, 3);
  CHECK(window_drops(*lab.node) == 3);
  CHECK(lab.node->counters().rx_filtered == rx_before + 3);
  CHECK(server->state == ESTABLISHED);
  CHECK(server->rcv_nxt == expected);
  CHECK(lab.server.received == data);

  // Near: a retransmission of bytes already received (lwIP acknowledges it again) and a
  // SYN far away (RFC 5961: lwIP's to answer) are lwIP's; not counted here.
  lab.inject(lab.a(),
             segment_from_client(lab, client, expected - 1000, TcpSegmentView::ACK | TcpSegmentView::PSH, 100));
  lab.inject(lab.a(), segment_from_client(lab, client, expected + 0x80000000u, TcpSegmentView::SYN, 0));
  lab.run([] { return false; }, 3);
  CHECK(window_drops(*lab.node) == 3);
  CHECK(server->state == ESTABLISHED);
  CHECK(lab.server.received == data);

  // The connection goes on byte-exact.
  auto more = testing::pattern(20'000, 4);
  lab.client.send(more);
  lab.run([&] { return lab.server.received.size() == data.size() + more.size(); });
  data.insert(data.end(), more.begin(), more.end());
  CHECK(lab.server.received == data);
}

TEST_CASE("segments of flows lwIP does not hold are not the window stage's") {
  testing::PeerLab lab;
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  const uint16_t other_port = static_cast<uint16_t>(client->local_port + 1);
  lab.inject(lab.a(), segment_from_client(lab, client, 0x12345678u, TcpSegmentView::ACK, 0, other_port));
  lab.run([] { return false; }, 3);
  CHECK(window_drops(*lab.node) == 0);
}
