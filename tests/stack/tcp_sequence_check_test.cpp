// lwIP patch "sequence check first" (cmake/LwipPatches.cmake): a segment whose sequence
// number is outside the receive window changes nothing on the connection (not its
// acknowledged data, not its send window), and a flood of them gets at most a bounded
// number of ACKs a second; a retransmission of data already received still gets its ACK.
// Against the real lwIP, two addresses of one stack (tests/support/lwip_lab.hpp). The
// forgeries here lie beyond the window but within the Node's sequence zone
// (stack/sequence_window.hpp), so they reach lwIP; farther ones the Node drops first
// (tests/stack/sequence_window_test.cpp).
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "lwip/priv/tcp_priv.h"
#include "roam_lwip_hooks.h"
#include "stack/sequence_window.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using namespace roam::testing;

using Lab = PeerLab;

// A segment "from the client" to the server's connection, with chosen seq and ack.
std::vector<uint8_t> forged(const Lab& lab, const tcp_pcb* server_pcb, uint32_t seq, uint32_t ack, size_t length) {
  wire::Ipv4TcpFields f;
  std::copy_n(lab.c().bytes.begin(), 4, f.src.begin());
  std::copy_n(lab.a().bytes.begin(), 4, f.dst.begin());
  f.src_port = server_pcb->remote_port;
  f.dst_port = server_pcb->local_port;
  f.seq = seq;
  f.ack = ack;
  f.flags = 0x18;  // PSH, ACK
  f.window = 0;    // it would close the server's send window, were it believed
  std::vector<uint8_t> payload(length, 0x5A);
  std::vector<uint8_t> packet(wire::ipv4_tcp_packet_size(0, length));
  REQUIRE(wire::build_ipv4_tcp(packet, f, payload) == packet.size());
  return packet;
}

// Outside lwIP's window (at most TCP_WND) yet near enough for the Node to hand it to lwIP.
uint32_t beyond_window(uint32_t rcv_nxt, std::mt19937& random) {
  static_assert(sequence_zone > TCP_WND + 1);
  return rcv_nxt + (TCP_WND + 1) + static_cast<uint32_t>(random() % (sequence_zone - TCP_WND - 1));
}

TEST_CASE("segments outside the receive window acknowledge nothing and move no window") {
  Lab lab;
  lab.connect();
  // The server has data in flight that the client never received: hold its packets.
  lab.lose = [&](std::span<const uint8_t> packet) { return IpAddress::source_of(packet) == lab.a(); };
  lab.server.send(std::vector<uint8_t>(200'000, 0x42));
  lab.run([] { return false; }, 20);
  tcp_pcb* pcb = lab.server.connection->pcb();
  REQUIRE(pcb->snd_nxt != pcb->lastack);
  const uint32_t lastack = pcb->lastack, snd_wnd = pcb->snd_wnd, rcv_nxt = pcb->rcv_nxt;
  const uint32_t unacceptable_before = roam_lwip_unacceptable_segments;

  // Forgeries whose ACK field acknowledges all the data in flight, at sequence numbers
  // outside the window (what a blind attacker mostly sends), with and without payload.
  std::mt19937 random(7);
  int sent = 0;
  for (int i = 0; i < 500; ++i) {
    uint32_t seq = beyond_window(rcv_nxt, random);
    lab.inject(lab.a(), forged(lab, pcb, seq, pcb->snd_nxt, i % 2 == 0 ? 0 : 83));
    ++sent;
  }
  lab.run([] { return false; }, 5);
  CHECK(pcb->lastack == lastack);
  CHECK(pcb->snd_wnd == snd_wnd);
  CHECK(pcb->rcv_nxt == rcv_nxt);
  CHECK(roam_lwip_unacceptable_segments - unacceptable_before == static_cast<uint32_t>(sent));

  // The same ACK at the right sequence number is a genuine segment: lwIP takes it.
  lab.inject(lab.a(), forged(lab, pcb, rcv_nxt, pcb->lastack + 1, 0));
  lab.run([] { return false; }, 5);
  CHECK(pcb->lastack == lastack + 1);
}

TEST_CASE("a flood of unacceptable segments gets a bounded number of ACKs; retransmissions still get theirs") {
  Lab lab;
  lab.connect();
  lab.client.send(std::vector<uint8_t>(10'000, 0x11));
  lab.run([&] { return lab.server.received.size() == 10'000; });
  tcp_pcb* pcb = lab.server.connection->pcb();
  const uint32_t rcv_nxt = pcb->rcv_nxt;

  size_t acks = 0;
  lab.lose = [&](std::span<const uint8_t> packet) {
    if (IpAddress::source_of(packet) == lab.a()) ++acks;
    return true;  // nothing reaches the client: it would answer the ACKs
  };
  const uint32_t suppressed_before = roam_lwip_challenge_acks_suppressed;
  const int flood = 3 * ROAM_LWIP_CHALLENGE_ACK_LIMIT;
  std::mt19937 random(11);
  for (int i = 0; i < flood; ++i) {
    uint32_t seq = beyond_window(rcv_nxt, random);
    lab.inject(lab.a(), forged(lab, pcb, seq, pcb->snd_nxt, 10));
  }
  lab.run([] { return false; }, 5);
  // Within one second of the stack's clock at most the limit are answered (two windows
  // when the flood straddles a second boundary).
  CHECK(acks <= 2 * ROAM_LWIP_CHALLENGE_ACK_LIMIT);
  CHECK(roam_lwip_challenge_acks_suppressed - suppressed_before >= static_cast<uint32_t>(flood) - acks);

  // Data we already have (a retransmission): always acknowledged, flood or not.
  acks = 0;
  lab.inject(lab.a(), forged(lab, pcb, rcv_nxt - 1000, pcb->snd_nxt, 1000));
  lab.run([] { return false; }, 5);
  CHECK(acks == 1);
  CHECK(pcb->rcv_nxt == rcv_nxt);
}

TEST_CASE("the acceptability rule itself (RFC 793 section 3.3)") {
  // Window [1000, 2000).
  CHECK(roam_lwip_tcp_segment_acceptable(1000, 1000, 2000, 1000, 0));
  CHECK(roam_lwip_tcp_segment_acceptable(1000, 1000, 2000, 1999, 0));
  CHECK_FALSE(roam_lwip_tcp_segment_acceptable(1000, 1000, 2000, 2000, 0));
  CHECK_FALSE(roam_lwip_tcp_segment_acceptable(1000, 1000, 2000, 999, 0));
  // Data overlapping the left edge (a partial retransmission) is acceptable.
  CHECK(roam_lwip_tcp_segment_acceptable(1000, 1000, 2000, 900, 200));
  CHECK_FALSE(roam_lwip_tcp_segment_acceptable(1000, 1000, 2000, 800, 200));
  // The announced right edge counts even when rcv_wnd shrank below it.
  CHECK(roam_lwip_tcp_segment_acceptable(1000, 500, 2000, 1800, 10));
  // Zero window: only segments at rcv_nxt.
  CHECK(roam_lwip_tcp_segment_acceptable(1000, 0, 1000, 1000, 1));
  CHECK_FALSE(roam_lwip_tcp_segment_acceptable(1000, 0, 1000, 1001, 0));
  // Across the 2^32 wrap.
  CHECK(roam_lwip_tcp_segment_acceptable(0xFFFFFF00u, 0x200, 0x100, 0x50, 0));
  CHECK_FALSE(roam_lwip_tcp_segment_acceptable(0xFFFFFF00u, 0x200, 0x100, 0x150, 0));
}

}  // namespace
