// Dead-peer detection (stack/dead_peer.*): the pure decision, then TcpConnection applying
// it against the real lwIP (two addresses of one stack, tests/support/lwip_lab.hpp): a
// live idle peer is probed and kept, a silent one is given up on with the right reason
// (keepalive, retransmission, connect timeout), a RST to a SYN is a refusal, and a
// keepalive probe is answered even when the stack's challenge-ACK budget is spent.
// Bounds here only stop hangs (the lab gives up after 60 s); nothing is timed.
#include "stack/dead_peer.hpp"

#include <doctest/doctest.h>

#include <random>

#include "roam_lwip_hooks.h"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using namespace roam::testing;
using Action = PeerVerdict::Action;

TEST_CASE("an idle peer is probed after a third of the bound, then every interval, and dead at the bound") {
  DeadPeerPolicy policy{30'000, 10'000};
  CHECK(policy.idle_before_probe_ms() == 10'000);
  CHECK(policy.probe_interval_ms() == 2'000);
  CHECK(policy.poll_interval_ms() == 500);
  PeerSilence seen;
  seen.silent_ms = 9'999;
  CHECK(judge_peer(policy, seen).action == Action::nothing);
  seen.silent_ms = 10'000;
  CHECK(judge_peer(policy, seen).action == Action::probe);
  seen.probes_sent = 1;
  CHECK(judge_peer(policy, seen).action == Action::nothing);  // the next one is 2 s later
  seen.silent_ms = 12'000;
  CHECK(judge_peer(policy, seen).action == Action::probe);
  seen.probes_sent = 10;
  seen.silent_ms = 29'999;
  CHECK(judge_peer(policy, seen).action == Action::nothing);
  seen.silent_ms = 30'000;
  auto verdict = judge_peer(policy, seen);
  CHECK(verdict.action == Action::give_up);
  CHECK(verdict.reason == PeerLoss::keepalive_timeout);
}

TEST_CASE("a peer silent with data outstanding is not probed, and its end is a retransmission timeout") {
  DeadPeerPolicy policy{30'000, 0};
  PeerSilence seen;
  seen.data_outstanding = true;
  seen.silent_ms = 20'000;
  CHECK(judge_peer(policy, seen).action == Action::nothing);
  seen.silent_ms = 30'000;
  auto verdict = judge_peer(policy, seen);
  CHECK(verdict.action == Action::give_up);
  CHECK(verdict.reason == PeerLoss::retransmission_timeout);
}

TEST_CASE("an active open gives up at the connect timeout; zero bounds never give up") {
  PeerSilence connecting;
  connecting.connecting = true;
  connecting.silent_ms = 9'999;
  CHECK(judge_peer({30'000, 10'000}, connecting).action == Action::nothing);
  connecting.silent_ms = 10'000;
  auto verdict = judge_peer({30'000, 10'000}, connecting);
  CHECK(verdict.action == Action::give_up);
  CHECK(verdict.reason == PeerLoss::connect_timeout);
  // The dead-peer bound does not apply to a handshake, nor the connect timeout after it.
  CHECK(judge_peer({30'000, 0}, connecting).action == Action::nothing);
  PeerSilence idle;
  idle.silent_ms = 1'000'000'000;
  CHECK(judge_peer({0, 10'000}, idle).action == Action::nothing);
  CHECK_FALSE(DeadPeerPolicy{}.active());
  CHECK(std::string(peer_loss_name(PeerLoss::refused)) == "refused");
}

TEST_CASE("a keepalive probe gets its ACK even when the challenge-ACK budget is spent") {
  std::mt19937 random(12);
  const uint32_t rcv_nxt = 0x10000000;
  // Spend the current second's budget on out-of-window junk, until one is refused.
  bool spent = false;
  for (int i = 0; i < 20 * ROAM_LWIP_CHALLENGE_ACK_LIMIT && !spent; ++i)
    spent = roam_lwip_tcp_unacceptable_ack_allowed(
                rcv_nxt, rcv_nxt + 0x40000000 + static_cast<uint32_t>(random() % 1000), 0) == 0;
  REQUIRE(spent);
  CHECK(roam_lwip_tcp_unacceptable_ack_allowed(rcv_nxt, rcv_nxt - 1, 0) == 1);
}

// Sets the process's policy for one test and puts the previous one back.
class PolicyScope {
 public:
  explicit PolicyScope(const DeadPeerPolicy& policy) : saved_(TcpConnection::dead_peer_policy()) {
    TcpConnection::set_dead_peer_policy(policy);
  }
  ~PolicyScope() { TcpConnection::set_dead_peer_policy(saved_); }

 private:
  DeadPeerPolicy saved_;
};

// Short bounds so the lab's real lwIP timers get there quickly: 600 ms silence, probes
// from 200 ms every 40 ms; active opens fail after 300 ms.
const DeadPeerPolicy fast{600, 300};

bool from(const IpAddress& host, std::span<const uint8_t> packet) {
  return IpAddress::source_of(packet) == host;
}

TEST_CASE("an idle connection whose peer answers the probes lives on for many bounds") {
  PolicyScope scope(fast);
  PeerLab lab;
  lab.connect();
  int probes = 0;
  lab.lose = [&](std::span<const uint8_t> packet) {
    // The client's empty segments one before its next sequence number (IPv4 + TCP, no
    // options, no data): its keepalive probes.
    if (from(lab.c(), packet) && packet.size() == 40 && lab.client.connection->alive()) {
      uint32_t seq = uint32_t{packet[24]} << 24 | uint32_t{packet[25]} << 16 | uint32_t{packet[26]} << 8 | packet[27];
      if (seq == lab.client.connection->pcb()->snd_nxt - 1) ++probes;
    }
    return false;
  };
  uint64_t until = uv_now(lab.node->loop()) + 5 * fast.dead_after_ms;
  lab.run([&] { return lab.client.failed || lab.server.failed || uv_now(lab.node->loop()) >= until; });
  CHECK_FALSE(lab.client.failed);
  CHECK_FALSE(lab.server.failed);
  CHECK(probes >= 5);  // about 4 per bound after the first third
  CHECK(lab.client.connection->alive());
  CHECK(lab.client.connection->loss() == PeerLoss::none);
}

TEST_CASE("an idle connection whose peer went silent ends with a keepalive timeout") {
  PolicyScope scope(fast);
  PeerLab lab;
  lab.connect();
  uint64_t keepalive_losses = peer_losses(PeerLoss::keepalive_timeout);
  lab.lose = [&](std::span<const uint8_t> packet) { return from(lab.a(), packet); };  // A's packets vanish
  lab.run([&] { return lab.client.failed; });
  REQUIRE(lab.client.failed);
  CHECK(lab.client.connection->loss() == PeerLoss::keepalive_timeout);
  CHECK(lab.client.connection->loss_text().find("keepalive timeout (nothing heard for") == 0);
  CHECK(lab.client.connection->peer() == lab.a().to_string() + ":7000");
  CHECK(peer_losses(PeerLoss::keepalive_timeout) >= keepalive_losses + 1);
  // The server's own probes were never answered either (a peer's probes, outside the
  // window, do not count as hearing from it): it ends at about the same time, by its own
  // timeout or by the client's RST, whichever comes first.
  lab.run([&] { return lab.server.failed; });
  REQUIRE(lab.server.failed);
  PeerLoss server_loss = lab.server.connection->loss();
  CHECK((server_loss == PeerLoss::reset_by_peer || server_loss == PeerLoss::keepalive_timeout));
}

TEST_CASE("a sender whose peer went silent ends with a retransmission timeout") {
  PolicyScope scope(fast);
  PeerLab lab;
  lab.connect();
  lab.lose = [&](std::span<const uint8_t> packet) { return from(lab.a(), packet); };
  lab.client.send(std::vector<uint8_t>(100'000, 0x33));
  lab.run([&] { return lab.client.failed; });
  REQUIRE(lab.client.failed);
  CHECK(lab.client.connection->loss() == PeerLoss::retransmission_timeout);
}

TEST_CASE("an active open without an answer ends with a connect timeout; one answered by RST is refused") {
  PolicyScope scope(fast);
  PeerLab lab;
  uint64_t connect_timeouts = peer_losses(PeerLoss::connect_timeout);
  uint64_t refusals = peer_losses(PeerLoss::refused);
  LabPeer unanswered;
  lab.lose = [&](std::span<const uint8_t> packet) { return !from(lab.c(), packet); };
  auto c1 = TcpConnection::connect(lab.a(), lab_port, &unanswered, &lab.c());
  REQUIRE(c1);
  unanswered.connection = std::move(c1.value());
  lab.run([&] { return unanswered.failed; });
  REQUIRE(unanswered.failed);
  CHECK_FALSE(unanswered.connected);
  CHECK(unanswered.connection->loss() == PeerLoss::connect_timeout);
  CHECK(peer_losses(PeerLoss::connect_timeout) == connect_timeouts + 1);

  lab.lose = nullptr;
  LabPeer refused;
  auto c2 = TcpConnection::connect(lab.a(), lab_port + 1, &refused, &lab.c());  // nothing listens there
  REQUIRE(c2);
  refused.connection = std::move(c2.value());
  lab.run([&] { return refused.failed; });
  REQUIRE(refused.failed);
  CHECK(refused.connection->loss() == PeerLoss::refused);
  CHECK(peer_losses(PeerLoss::refused) == refusals + 1);
}

TEST_CASE("with no policy an idle silent peer is kept (the old behaviour, for callers that opt out)") {
  PolicyScope scope(DeadPeerPolicy{});
  PeerLab lab;
  lab.connect();
  lab.lose = [&](std::span<const uint8_t> packet) { return from(lab.a(), packet); };
  uint64_t until = uv_now(lab.node->loop()) + 3 * fast.dead_after_ms;
  lab.run([&] { return lab.client.failed || uv_now(lab.node->loop()) >= until; });
  CHECK_FALSE(lab.client.failed);
}

}  // namespace
