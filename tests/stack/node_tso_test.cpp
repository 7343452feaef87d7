// Node over links with TCP segmentation offload (LinkOffloads, as a TUN device with
// IFF_VNET_HDR gives): lwIP builds multi-MSS segments, the Node hands them to
// send_segmented with the connection's real MSS, the SYN still advertises the path MSS,
// and the byte stream and its single FIN survive, with and without loss.
#include <doctest/doctest.h>

#include <random>

#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::pattern;

constexpr LinkOffloads tso{65435, true};

// The usual lab over links with TSO.
struct Lab : roam::testing::PeerLab {
  explicit Lab(int family) : PeerLab(family, tso) {}
};

size_t transport_offset(std::span<const uint8_t> packet) {
  return (packet[0] >> 4) == 4 ? static_cast<size_t>(packet[0] & 0x0f) * 4 : 40;
}

struct Observed {
  std::vector<uint16_t> syn_mss;  // the MSS option of every SYN
  size_t fins_from_server = 0;
};

// Watches packets in flight (returns "do not drop").
std::function<bool(std::span<const uint8_t>)> observe(Observed& seen, uint16_t server_port) {
  return [&seen, server_port](std::span<const uint8_t> packet) {
    const size_t t = transport_offset(packet);
    const uint8_t flags = packet[t + 13];
    if ((flags & 0x02) != 0 && packet[t + 20] == 2 && packet[t + 21] == 4)
      seen.syn_mss.push_back(static_cast<uint16_t>((packet[t + 22] << 8) | packet[t + 23]));
    const uint16_t src_port = static_cast<uint16_t>((packet[t] << 8) | packet[t + 1]);
    if ((flags & 0x01) != 0 && src_port == server_port) ++seen.fins_from_server;
    return false;
  };
}

void bulk_over_tso(int family) {
  // lwIP's fixed buffers: sized ones start at 64 KiB and write in half-buffer steps, so
  // whether a segment ever exceeds 32 KiB would depend on how fast the tuners grow on a
  // loaded machine (this test is about segmentation, not tuning).
  roam::testing::BufferAutotune fixed(false, false);
  Lab lab(family);
  Observed seen;
  lab.lose = observe(seen, roam::testing::lab_port);
  lab.connect();
  lab.server.to_send = pattern(4 << 20, 11);
  lab.server.pump();
  lab.run([&] { return lab.server.sent_offset == lab.server.to_send.size(); });
  lab.server.connection->close();  // FIN queued behind (on) the last multi-MSS segment
  lab.run([&] { return lab.client.received.size() == lab.server.to_send.size() && lab.client.remote_closed; });
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(lab.client.remote_closed);
  CHECK(seen.fins_from_server == 1);  // split segments must not keep the FIN on their head
  // The wire keeps the path MSS (MTU 1500 - headers); only the segments lwIP hands the
  // link grow.
  const uint16_t path_mss = family == 4 ? 1460 : 1440;
  REQUIRE(seen.syn_mss.size() == 2);
  CHECK(seen.syn_mss[0] == path_mss);
  CHECK(seen.syn_mss[1] == path_mss);
  CHECK(lab.largest_packet > 32 * 1024);
  CHECK(lab.largest_packet <= 65535);
  const auto mss = lab.segmented_mss();
  REQUIRE_FALSE(mss.empty());
  for (uint16_t m : mss) CHECK(m == path_mss);
  CHECK(lab.node->counters().tx_segmented == mss.size());
}

}  // namespace

TEST_CASE("over a TSO link lwIP sends multi-MSS segments with the path MSS, and the stream arrives intact (IPv4)") {
  bulk_over_tso(4);
}

TEST_CASE("over a TSO link lwIP sends multi-MSS segments with the path MSS, and the stream arrives intact (IPv6)") {
  bulk_over_tso(6);
}

TEST_CASE("over a TSO link both streams survive 5% loss of whole super-segments") {
  Lab lab(4);
  lab.connect();
  std::mt19937 random(5);
  lab.lose = [&random](std::span<const uint8_t>) { return random() % 100 < 5; };
  lab.server.to_send = pattern(2 << 20, 12);
  lab.client.to_send = pattern(1 << 20, 13);
  lab.server.pump();
  lab.client.pump();
  lab.run([&] {
    return lab.client.received.size() == lab.server.to_send.size() &&
           lab.server.received.size() == lab.client.to_send.size();
  });
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(lab.server.received == lab.client.to_send);
  CHECK(lab.rst_seen == 0);
}
