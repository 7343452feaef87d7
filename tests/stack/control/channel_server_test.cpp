// ChannelServer's registrations against the real lwIP (tests/support/lwip_lab.hpp): a
// carrier whose SYN proved its owner is registered only by that key's channel; a second
// client at the same address with another key is refused (ERROR 2, counted) and changes
// nothing; an owner-less carrier is bound to the first key that registers it, or refused
// under require_owner_proof; a flood of made-up ids is capped, and a channel drawing too
// many refusals is closed.
#include "stack/control/channel_server.hpp"

#include <doctest/doctest.h>

#include "stack/connection_id.hpp"
#include "stack/pcb_owner.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using namespace roam::testing;

constexpr uint16_t channel_port = 7001;

// One client's control channel from C to A.
struct ClientChannel {
  crypto::IdentityKey key = crypto::IdentityKey::generate();
  std::unique_ptr<ChannelConnection> connection;
  std::vector<control::ErrorMessage> errors;
  bool established = false;
  bool closed = false;

  ClientChannel(PeerLab& lab) {
    auto channel = std::make_unique<control::ControlChannel>(
        crypto::NoisePattern::xx, crypto::NoiseRole::initiator, key,
        control::Hello{control::protocol_version, "client", capability_owner_proof, {}});
    ChannelConnection::Callbacks callbacks;
    callbacks.on_established = [this](ChannelConnection&) { established = true; };
    callbacks.on_message = [this](ChannelConnection&, const control::Message& m) {
      if (const auto* e = std::get_if<control::ErrorMessage>(&m)) errors.push_back(*e);
    };
    callbacks.on_closed = [this](ChannelConnection&, const std::string&) { closed = true; };
    connection = std::make_unique<ChannelConnection>(*lab.node, std::move(channel), std::move(callbacks));
    auto tcp = TcpConnection::connect(lab.a(), channel_port, connection.get(), &lab.c());
    REQUIRE(tcp);
    connection->attach(std::move(tcp.value()), false);
    lab.run([&] { return established; });
    REQUIRE(established);
  }
  std::shared_ptr<const SynOptionSource> signer() const {
    return std::make_shared<OwnerProofSigner>(connection->channel().handshake_hash());
  }
  void send(PeerLab& lab, std::vector<uint64_t> ids, size_t errors_after) {
    REQUIRE(connection->send(control::RegisterConnections{std::move(ids)}));
    lab.run([&] { return errors.size() >= errors_after; }, 200);
  }
};

struct ServerLab : PeerLab {
  crypto::IdentityKey server_key = crypto::IdentityKey::generate();
  std::unique_ptr<ChannelServer> channels;

  explicit ServerLab(ChannelServerLimits limits = {}) {
    channels = std::make_unique<ChannelServer>(*node, server_key, "A", channel_port, nullptr, limits);
  }
  ~ServerLab() { channels->shutdown(); }
  // The lab's carrier C -> A, with `syn_option` in its SYN (or none).
  uint64_t open_carrier(std::shared_ptr<const SynOptionSource> syn_option) {
    auto connection = TcpConnection::connect(a(), lab_port, &client, &c(), std::move(syn_option));
    REQUIRE(connection);
    client.connection = std::move(connection.value());
    run([&] { return client.connected && server.connection != nullptr; });
    REQUIRE(server.connection);
    return connection_id(server.connection->pcb());
  }
};

}  // namespace

TEST_CASE("a proven carrier is registered by its owner's channel only; another key at the same address is refused") {
  ServerLab lab;
  ClientChannel victim(lab);
  ClientChannel attacker(lab);
  uint64_t id = lab.open_carrier(victim.signer());
  REQUIRE(id != 0);
  CHECK(lab.channels->owner_proof_counters().syns_proven == 1);

  attacker.send(lab, {id}, 1);  // before the victim even registered: the SYN proved whose it is
  REQUIRE(attacker.errors.size() == 1);
  CHECK(attacker.errors[0].code == control::error_not_your_connection);
  CHECK(lab.channels->counters().registrations_foreign == 1);
  CHECK(lab.channels->channel_for(id) == nullptr);

  victim.send(lab, {id}, 0);
  lab.run([&] { return lab.channels->counters().registrations == 1; }, 200);
  CHECK(lab.channels->counters().registrations == 1);
  CHECK(lab.channels->channel_for(id) != nullptr);
  ChannelConnection* owner = lab.channels->channel_for(id);

  attacker.send(lab, {id}, 2);  // after it: still refused, and the registration stays
  CHECK(attacker.errors.size() == 2);
  CHECK(lab.channels->counters().registrations_foreign == 2);
  CHECK(lab.channels->channel_for(id) == owner);
  CHECK(victim.errors.empty());
}

TEST_CASE("an owner-less carrier is bound to the first key that registers it; with require_owner_proof it is refused") {
  {
    ServerLab lab;
    ClientChannel first(lab);
    ClientChannel second(lab);
    uint64_t id = lab.open_carrier(nullptr);
    CHECK(lab.channels->owner_proof_counters().syns_unproven >= 1);
    first.send(lab, {id}, 0);
    lab.run([&] { return lab.channels->counters().registrations == 1; }, 200);
    CHECK(lab.channels->counters().registrations_unproven == 1);
    second.send(lab, {id}, 1);
    CHECK(second.errors.size() == 1);
    CHECK(lab.channels->counters().registrations_foreign == 1);
    CHECK(lab.channels->counters().registrations == 1);
  }
  {
    ServerLab lab(ChannelServerLimits{.require_owner_proof = true});
    ClientChannel client(lab);
    uint64_t id = lab.open_carrier(nullptr);
    client.send(lab, {id}, 1);
    CHECK(client.errors.size() == 1);
    CHECK(lab.channels->counters().registrations_unproven_refused == 1);
    CHECK(lab.channels->counters().registrations == 0);
    // A proven carrier of the same client is registered.
    // Aborted, not closed: a TIME_WAIT on the lab's port would outlive the lab.
    lab.client.connection->abort();
    lab.client.connection.reset();
    lab.client.connected = false;
    lab.server.connection->abort();
    lab.server.connection.reset();
    uint64_t proven = lab.open_carrier(client.signer());
    client.send(lab, {proven}, 1);
    lab.run([&] { return lab.channels->counters().registrations == 1; }, 200);
    CHECK(lab.channels->counters().registrations == 1);
  }
}

TEST_CASE("made-up ids are held up to the cap; a channel drawing too many refusals is closed") {
  ServerLab lab(ChannelServerLimits{.max_held_ids = 100, .max_refusals = 3});
  ClientChannel victim(lab);
  ClientChannel attacker(lab);
  uint64_t id = lab.open_carrier(victim.signer());
  std::vector<uint64_t> made_up;
  for (uint64_t i = 1; i <= 1000; ++i) made_up.push_back(i * 0x1000193);
  attacker.send(lab, made_up, 0);
  lab.run([&] { return lab.channels->counters().registrations_over_cap >= 900; }, 200);
  CHECK(lab.channels->counters().registrations_pending == 100);
  CHECK(lab.channels->counters().registrations_over_cap == 900);
  for (size_t n = 1; n <= 3; ++n) attacker.send(lab, {id}, n);
  lab.run([&] { return attacker.closed; }, 200);
  CHECK(attacker.closed);
  CHECK(lab.channels->counters().channels_closed_refusals == 1);
  CHECK(lab.channels->channel_count() == 1);  // the victim's
}
