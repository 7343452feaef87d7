// Transfer notifications (seed 004's Informer; ACM scope transfer) at the Follower: a
// carrier still connecting to the attacked server (its SYN unanswered) is redirected to
// the next proxy and connects there, with the same ISN; the app learns the server moved
// (its forwards follow); a replayed notification changes nothing. Against the real lwIP
// (tests/support/lwip_lab.hpp): A never answers (everything toward it is lost), B does.
#include <doctest/doctest.h>
#include <sodium.h>

#include <memory>
#include <vector>

#include "base/clock.hpp"
#include "crypto/identity_key.hpp"
#include "crypto/pool_certificate.hpp"
#include "stack/lwip_address.hpp"
#include "stack/migrate/follower.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::LabPeer;
using roam::testing::LwipLab;
using roam::testing::lab_port;

struct TransferLab {
  std::vector<std::unique_ptr<LabPeer>> accepted;
  std::vector<IpAddress> accepted_at;  // the local address of each accepted end
  LwipLab lab{4, [this](tcp_pcb* pcb) {
                accepted_at.push_back(from_lwip(pcb->local_ip));
                auto peer = std::make_unique<LabPeer>();
                peer->connection = std::make_unique<TcpConnection>(pcb, peer.get());
                accepted.push_back(std::move(peer));
                return true;
              }};
  std::unique_ptr<Follower> follower;
  std::vector<Follower::ServerMove> moves;
  crypto::PoolSigningKey pool = crypto::PoolSigningKey::generate();
  crypto::IdentityKey target_key = crypto::IdentityKey::generate();
  crypto::PublicKey server_key{};
  uint64_t sequence = 100;

  TransferLab() {
    Follower::Events events;
    events.on_server_moved = [this](const Follower::ServerMove& move) { moves.push_back(move); };
    follower = std::make_unique<Follower>(*lab.node, ChannelOptions{}, std::move(events));
    server_key.fill(5);
    // A is under attack: nothing reaches it.
    lab.lose = [this](std::span<const uint8_t> packet) {
      auto to = IpAddress::destination_of(packet);
      return to && *to == lab.a();
    };
  }
  ~TransferLab() {
    follower->close();
    lab.client.connection.reset();
    accepted.clear();
  }

  control::AddressChange transfer() {
    control::AddressChange t;
    t.sequence = ++sequence;
    randombytes_buf(t.nonce.data(), t.nonce.size());
    t.issued_at_ms = unix_ms();
    t.scope = control::AcmScope::transfer;
    t.old_address = lab.a();
    t.old_port = 0;
    t.new_address = lab.b();
    t.new_port = 0;
    auto certificate = crypto::encode_certificate(pool.admit(target_key.public_key(), 0));
    t.target_credential.assign(certificate.begin(), certificate.end());
    return t;
  }
  control::AcmVerdict apply(const control::AddressChange& t) {
    return follower->apply_acm(lab.a(), server_key, pool.public_key(), t, unix_ms());
  }
};

TEST_CASE("a carrier still connecting follows a transfer notification to the next proxy") {
  TransferLab t;
  auto c = TcpConnection::connect(t.lab.a(), lab_port, &t.lab.client, &t.lab.c());
  REQUIRE(c);
  t.lab.client.connection = std::move(c.value());
  t.lab.run([] { return false; }, 5);  // the SYN went out, and was lost
  tcp_pcb* pcb = t.lab.client.connection->pcb();
  REQUIRE(pcb != nullptr);
  REQUIRE(pcb->state == SYN_SENT);
  const uint32_t syn_end = pcb->snd_nxt;  // ISN + 1: the SYN went out
  auto notice = t.transfer();
  CHECK(t.apply(notice) == control::AcmVerdict::apply);
  CHECK(from_lwip(pcb->remote_ip) == t.lab.b());
  CHECK(t.follower->counters().transfers_applied == 1);
  CHECK(t.follower->counters().connects_redirected == 1);
  // The app is told: new connections to A (every port) go to B (the same ports).
  REQUIRE(t.moves.size() == 1);
  CHECK(t.moves[0].from == t.lab.a());
  CHECK(t.moves[0].from_port == 0);
  CHECK(t.moves[0].to == t.lab.b());
  CHECK(t.moves[0].to_port == 0);
  // The redirected SYN connects at B, without waiting for a retransmission timeout.
  t.lab.run([&t] { return t.lab.client.connected && t.accepted.size() == 1; });
  REQUIRE(t.lab.client.connected);
  REQUIRE(t.accepted.size() == 1);
  CHECK(t.accepted_at[0] == t.lab.b());
  CHECK(t.lab.client.connection->pcb()->lastack == syn_end);  // the same ISN: B acknowledged that SYN
  t.lab.client.send("hello b");
  t.lab.run([&t] { return t.accepted[0]->received.size() == 7; });
  CHECK(t.accepted[0]->received.size() == 7);
  // The same notification again is a replay: refused, nothing changes.
  CHECK(t.apply(notice) == control::AcmVerdict::replayed);
  CHECK(t.moves.size() == 1);
}

TEST_CASE("a transfer notification toward a host outside the sender's pool is refused") {
  TransferLab t;
  auto notice = t.transfer();
  crypto::PoolSigningKey other = crypto::PoolSigningKey::generate();
  auto certificate = crypto::encode_certificate(other.admit(t.target_key.public_key(), 0));
  notice.target_credential.assign(certificate.begin(), certificate.end());
  CHECK(t.apply(notice) == control::AcmVerdict::untrusted_target);
  CHECK(t.moves.empty());
  CHECK(t.follower->counters().transfers_applied == 0);
}

}  // namespace
