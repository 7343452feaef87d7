// Tests for ChannelServer's limits on channels whose Noise handshake has not completed
// (stack/control/channel_server.hpp, ChannelLimits): a peer that connects and says nothing
// is reset when the handshake time runs out, and half-open channels beyond the per-address
// or overall cap are refused at accept, counted, and leave no state.
#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "crypto/identity_key.hpp"
#include "stack/control/channel_server.hpp"
#include "support/lwip_lab.hpp"

namespace {

using roam::testing::LabPeer;
using roam::testing::LwipLab;

constexpr uint16_t channel_port = 7001;

// A TCP connection to A's channel port from `from` that never speaks Noise.
std::unique_ptr<LabPeer> open_silent(LwipLab& lab, const roam::IpAddress& from) {
  auto peer = std::make_unique<LabPeer>();
  auto connection = roam::TcpConnection::connect(lab.a(), channel_port, peer.get(), &from);
  REQUIRE(connection);
  peer->connection = std::move(connection.value());
  return peer;
}

}  // namespace

TEST_CASE("channel server: a connection without a handshake is reset when its time runs out") {
  LwipLab lab(4, [](tcp_pcb*) { return false; });
  auto key = roam::crypto::IdentityKey::generate();
  roam::ChannelLimits limits;
  limits.handshake_timeout_ms = 200;
  roam::ChannelServer server(*lab.node, key, "a", channel_port, nullptr, limits);

  auto silent = open_silent(lab, lab.c());
  lab.run([&] { return silent->connected && server.channel_count() == 1; });
  REQUIRE(server.half_open_count() == 1);

  lab.run([&] { return silent->failed || silent->remote_closed; });
  CHECK(silent->failed);  // reset, not a polite close: nothing to flush to a silent peer
  lab.run([&] { return server.channel_count() == 0; });
  CHECK(server.counters().handshakes_timed_out == 1);
  CHECK(server.counters().channels_failed == 1);
  CHECK(server.half_open_count() == 0);
  CHECK(server.counters().channels_refused == 0);
}

TEST_CASE("channel server: half-open channels beyond the per-address and overall caps are refused") {
  LwipLab lab(4, [](tcp_pcb*) { return false; });
  auto key = roam::crypto::IdentityKey::generate();
  roam::ChannelLimits limits;
  limits.handshake_timeout_ms = 0;  // no timer: the caps alone
  limits.max_half_open = 3;
  limits.max_half_open_per_source = 2;
  roam::ChannelServer server(*lab.node, key, "a", channel_port, nullptr, limits);

  std::vector<std::unique_ptr<LabPeer>> from_c;
  for (int i = 0; i < 3; ++i) {
    from_c.push_back(open_silent(lab, lab.c()));
    LabPeer& peer = *from_c.back();
    lab.run([&] { return (peer.connected && server.channel_count() == static_cast<size_t>(i + 1)) || peer.failed; });
  }
  // The third from C is one too many for one address: reset at accept.
  lab.run([&] { return from_c[2]->failed; });
  CHECK_FALSE(from_c[0]->failed);
  CHECK_FALSE(from_c[1]->failed);
  CHECK(from_c[2]->failed);
  CHECK(server.channel_count() == 2);
  CHECK(server.counters().channels_refused == 1);
  CHECK(server.counters().channels_refused_source == 1);
  CHECK(server.counters().channels_accepted == 2);

  // Another address still gets in, up to the overall cap.
  auto from_b = open_silent(lab, lab.b());
  lab.run([&] { return from_b->connected && server.channel_count() == 3; });
  CHECK(server.half_open_count() == 3);
  auto over = open_silent(lab, lab.b());
  lab.run([&] { return over->failed; });
  CHECK(over->failed);
  CHECK(server.counters().channels_refused == 2);
  CHECK(server.counters().channels_refused_source == 1);  // the overall cap this time

  // A half-open channel that ends frees its slot.
  from_c[0]->connection->close();
  lab.run([&] { return server.channel_count() == 2; });
  CHECK(server.half_open_count() == 2);
  auto again = open_silent(lab, lab.c());
  lab.run([&] { return (again->connected && server.channel_count() == 3) || again->failed; });
  CHECK_FALSE(again->failed);
  CHECK(server.counters().channels_refused == 2);
}
