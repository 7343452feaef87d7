// Follower::Events::on_server_moved (issue 12, new connections follow): it fires when an
// applied ACM took every connection the client had at the server's endpoint (named one by
// one, possibly over several ACMs, or in the global form), with the old and new endpoint,
// and not while some connection stays behind or for a refused ACM. Against the real lwIP
// (tests/support/lwip_lab.hpp): two client connections from C to A, whose server ends
// stay frozen (nothing answers at A or B; the ACMs are applied from code).
#include <doctest/doctest.h>
#include <sodium.h>

#include <memory>
#include <vector>

#include "base/clock.hpp"
#include "crypto/identity_key.hpp"
#include "crypto/pool_certificate.hpp"
#include "stack/connection_id.hpp"
#include "stack/migrate/follower.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::LabPeer;
using roam::testing::LwipLab;
using roam::testing::lab_port;

struct MovedLab {
  std::vector<std::unique_ptr<LabPeer>> servers;  // A's ends
  LwipLab lab{4, [this](tcp_pcb* pcb) {
                auto peer = std::make_unique<LabPeer>();
                peer->connection = std::make_unique<TcpConnection>(pcb, peer.get());
                servers.push_back(std::move(peer));
                return true;
              }};
  LabPeer second;  // the client's second connection (lab.client is the first)
  std::unique_ptr<Follower> follower;
  std::vector<Follower::ServerMove> moves;
  crypto::PoolSigningKey pool = crypto::PoolSigningKey::generate();
  crypto::IdentityKey target_key = crypto::IdentityKey::generate();
  crypto::PublicKey server_key{};
  uint64_t sequence = 0;

  MovedLab() {
    Follower::Events events;
    events.on_server_moved = [this](const Follower::ServerMove& move) { moves.push_back(move); };
    follower = std::make_unique<Follower>(*lab.node, ChannelOptions{}, std::move(events));
    lab.connect([this] { return servers.size() == 1; });
    auto c = TcpConnection::connect(lab.a(), lab_port, &second, &lab.c());
    REQUIRE(c);
    second.connection = std::move(c.value());
    lab.run([this] { return second.connected && servers.size() == 2; });
    REQUIRE(second.connected);
    server_key.fill(3);
    // Both ends share a connection id in one process: A's ends leave lwIP's lists, as a
    // moving server's do, so each id names the client's end only.
    for (auto& server : servers) migrate::freeze_pcb(server->connection->pcb());
  }
  ~MovedLab() {
    for (auto& server : servers) migrate::thaw_pcb(server->connection->pcb());
    follower->close();
    second.connection.reset();
    servers.clear();
  }

  control::AddressChange acm(std::vector<uint64_t> ids) {
    control::AddressChange a;
    a.sequence = ++sequence;
    randombytes_buf(a.nonce.data(), a.nonce.size());
    a.issued_at_ms = unix_ms();
    a.scope = ids.empty() ? control::AcmScope::global : control::AcmScope::connections;
    a.old_address = lab.a();
    a.old_port = lab_port;
    a.new_address = lab.b();
    a.connection_ids = std::move(ids);
    auto certificate = crypto::encode_certificate(pool.admit(target_key.public_key(), 0));
    a.target_credential.assign(certificate.begin(), certificate.end());
    return a;
  }
  control::AcmVerdict apply(const control::AddressChange& a) {
    return follower->apply_acm(lab.a(), server_key, pool.public_key(), a, unix_ms());
  }
  uint64_t first_id() { return connection_id(lab.client.connection->pcb()); }
  uint64_t second_id() { return connection_id(second.connection->pcb()); }
};

TEST_CASE("the server counts as moved once ACMs took every connection the client had there") {
  MovedLab m;
  REQUIRE(m.first_id() != 0);
  REQUIRE(m.second_id() != 0);
  // A refused ACM (stale) says nothing.
  auto stale = m.acm({m.first_id(), m.second_id()});
  stale.issued_at_ms -= 3'600'000;
  CHECK(m.apply(stale) == control::AcmVerdict::stale);
  CHECK(m.moves.empty());
  // One of two: a connection stays at A, so A has not moved as a whole.
  CHECK(m.apply(m.acm({m.first_id()})) == control::AcmVerdict::apply);
  CHECK(m.moves.empty());
  // The other one: nothing of ours is left at A.
  CHECK(m.apply(m.acm({m.second_id()})) == control::AcmVerdict::apply);
  REQUIRE(m.moves.size() == 1);
  CHECK(m.moves[0].from == m.lab.a());
  CHECK(m.moves[0].from_port == lab_port);
  CHECK(m.moves[0].to == m.lab.b());
  CHECK(m.moves[0].to_port == lab_port);  // the ACM left the port unchanged
}

TEST_CASE("a global ACM moves the server at once, to the port it names") {
  MovedLab m;
  auto global = m.acm({});
  global.new_port = 7100;
  CHECK(m.apply(global) == control::AcmVerdict::apply);
  REQUIRE(m.moves.size() == 1);
  CHECK(m.moves[0].from == m.lab.a());
  CHECK(m.moves[0].to == m.lab.b());
  CHECK(m.moves[0].to_port == 7100);
  CHECK(m.lab.client.connection->pcb()->remote_port == 7100);
}

}  // namespace
