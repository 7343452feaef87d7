// Owner proofs against the real lwIP (tests/support/lwip_lab.hpp: client C and server A
// in one stack): an armed carrier's SYN, and only its SYN, carries the option; the
// verifier remembers the proven owner and the accept stores it in the pcb, whence it moves
// in the snapshot. A forged proof drops the SYN; an unknown channel leaves no owner.
#include "stack/control/owner_proof.hpp"

#include <doctest/doctest.h>

#include "stack/migrate/migration_guard.hpp"
#include "stack/pcb_owner.hpp"
#include "stack/wire/owner_proof_option.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/lwip_lab.hpp"
#include "support/server_move.hpp"

namespace {

using namespace roam;
using namespace roam::testing;

std::array<uint8_t, 64> hash_of(uint8_t seed) {
  std::array<uint8_t, 64> h{};
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(seed + i * 5);
  return h;
}

crypto::PublicKey client_key() {
  crypto::PublicKey key{};
  key.fill(0x42);
  return key;
}

// Counts segments with and without the option as the lab carries them.
struct OptionWatch {
  int syns_with = 0;
  int syns_without = 0;
  int others_with = 0;
  void see(std::span<const uint8_t> packet) {
    auto info = wire::check_ip_packet(packet);
    if (!info || info->protocol != wire::ip_protocol_tcp) return;
    auto tcp = wire::parse_tcp_segment(packet, *info);
    if (!tcp) return;
    wire::OwnerProofOption option;
    bool with = wire::find_owner_proof_option(tcp->options, option) == wire::MacOptionLookup::found;
    bool syn = tcp->has(wire::TcpSegmentView::SYN) && !tcp->has(wire::TcpSegmentView::ACK);
    if (syn) (with ? syns_with : syns_without)++;
    else if (with) ++others_with;
  }
};

// A source that names a known channel with a made-up MAC.
struct ForgedSource final : SynOptionSource {
  crypto::OwnerChannelTag tag;
  size_t option_length() const override { return wire::owner_proof_option_bytes; }
  void write_option(uint32_t, uint16_t, std::span<uint8_t> out) const override {
    wire::OwnerProofOption option;
    option.channel_tag = tag;
    option.mac.fill(0x99);
    wire::write_owner_proof_option(option, out);
  }
};

void connect_with(PeerLab& lab, std::shared_ptr<const SynOptionSource> source, int max_rounds = 1 << 30) {
  auto connection = TcpConnection::connect(lab.a(), lab_port, &lab.client, &lab.c(), std::move(source));
  REQUIRE(connection);
  lab.client.connection = std::move(connection.value());
  lab.run([&] { return lab.client.connected && lab.server.connection != nullptr; }, max_rounds);
}

}  // namespace

TEST_CASE("an armed carrier proves its owner in its SYN only; the owner is stored with the pcb and moves with it") {
  PeerLab lab;
  OptionWatch watch;
  lab.lose = [&](std::span<const uint8_t> packet) {
    watch.see(packet);
    return false;
  };
  OwnerProofVerifier verifier(*lab.node);
  int channel = 0;
  verifier.add_channel(&channel, hash_of(1), client_key());
  connect_with(lab, std::make_shared<OwnerProofSigner>(hash_of(1)));
  REQUIRE(lab.client.connected);
  REQUIRE(lab.server.connection);
  CHECK(watch.syns_with == 1);
  CHECK(watch.syns_without == 0);
  CHECK(verifier.counters().syns_proven == 1);
  CHECK(remembered_syn_owner_count() == 0);  // adopted at accept
  tcp_pcb* server = lab.server.connection->pcb();
  REQUIRE(pcb_owner(server).has_value());
  CHECK(*pcb_owner(server) == owner_key_of(client_key()));
  CHECK_FALSE(pcb_owner(lab.client.connection->pcb()).has_value());

  // Data both ways: no other segment carries the option, and the stream is exact.
  const auto up = pattern(50'000, 1);
  const auto down = pattern(30'000, 2);
  lab.client.send(up);
  lab.server.send(down);
  lab.run([&] { return lab.server.received.size() == up.size() && lab.client.received.size() == down.size(); });
  CHECK(lab.server.received == up);
  CHECK(lab.client.received == down);
  CHECK(watch.others_with == 0);

  // The owner travels in the snapshot and is stored with the imported pcb.
  migrate::MigrationGuard guard(*lab.node);
  auto moved = move_server_end(lab, guard);
  REQUIRE(moved.snapshot.owner.has_value());
  CHECK(*moved.snapshot.owner == owner_key_of(client_key()));
  REQUIRE(pcb_owner(moved.pcb).has_value());
  CHECK(*pcb_owner(moved.pcb) == owner_key_of(client_key()));
  guard.unpark_all();
}

TEST_CASE("a SYN with a forged proof is dropped; one naming an unknown channel makes an owner-less connection") {
  {
    PeerLab lab;
    OwnerProofVerifier verifier(*lab.node);
    int channel = 0;
    verifier.add_channel(&channel, hash_of(1), client_key());
    auto forged = std::make_shared<ForgedSource>();
    forged->tag = crypto::OwnerProofKey(hash_of(1)).channel_tag();
    connect_with(lab, forged, 50);
    CHECK(verifier.counters().syns_forged >= 1);
    CHECK(verifier.counters().syns_proven == 0);
    CHECK(lab.server.connection == nullptr);
    CHECK(remembered_syn_owner_count() == 0);
    lab.client.connection->abort();
  }
  {
    PeerLab lab;
    OwnerProofVerifier verifier(*lab.node);
    int channel = 0;
    verifier.add_channel(&channel, hash_of(1), client_key());
    verifier.remove_channel(&channel);  // the channel closed before the SYN came
    connect_with(lab, std::make_shared<OwnerProofSigner>(hash_of(1)));
    REQUIRE(lab.server.connection);
    CHECK(verifier.counters().syns_unknown_channel == 1);
    CHECK_FALSE(pcb_owner(lab.server.connection->pcb()).has_value());
  }
}
