// SegmentMacGuard against the real lwIP (tests/support/lwip_lab.hpp: client C and server A
// in one stack): with both ends protected, a transfer both ways is byte-exact and every
// segment is signed and verified; a forged segment that TCP itself would accept (right
// sequence numbers, valid checksum) is dropped for a wrong or missing MAC and the stream
// stays exact; on links with TUN offloads a protected flow's multi-MSS segments are cut
// and each piece signed, while unprotected flows keep TSO. A moved connection takes its
// state along in its snapshot: adopted at the new host B, forgeries are dropped there and
// the genuine stream passes without a new registration; a re-registration rolls the key
// over without losing a segment.
#include "stack/control/segment_mac_guard.hpp"

#include <doctest/doctest.h>

#include "apps/cli.hpp"
#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/wire/connection_snapshot.hpp"
#include "stack/wire/segment_mac_option.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using namespace roam::testing;

using Lab = PeerLab;

std::array<uint8_t, 64> session_hash() {
  std::array<uint8_t, 64> h{};
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(i * 3 + 1);
  return h;
}

// A data segment "from the server" to the client at exactly the sequence number the client
// expects: TCP would take it. `mac` chooses what it carries: none, or a made-up tag.
std::vector<uint8_t> injected(const Lab& lab, const tcp_pcb* client, bool with_mac) {
  wire::Ipv4TcpFields f;
  std::copy_n(lab.a().bytes.begin(), 4, f.src.begin());
  std::copy_n(lab.c().bytes.begin(), 4, f.dst.begin());
  f.src_port = client->remote_port;
  f.dst_port = client->local_port;
  f.seq = client->rcv_nxt;
  f.ack = client->snd_nxt;
  f.flags = wire::TcpSegmentView::ACK | wire::TcpSegmentView::PSH;
  f.window = 1000;
  const std::vector<uint8_t> option = {253, 16, 0x52, 0x53, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9};
  if (with_mac) f.options = option;
  std::vector<uint8_t> payload(100, 0xEE);
  std::vector<uint8_t> packet(wire::ipv4_tcp_packet_size(f.options.size(), payload.size()));
  REQUIRE(wire::build_ipv4_tcp(packet, f, payload) == packet.size());
  return packet;
}

TEST_CASE("protected both ways: byte-exact, every segment signed and verified; forgeries dropped") {
  Lab lab;
  SegmentMacGuard guard(*lab.node);
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  tcp_pcb* server = lab.server.connection->pcb();
  REQUIRE(connection_id(client) == connection_id(server));
  guard.protect(client, connection_id(client), session_hash(), crypto::SegmentDirection::client_to_server);
  guard.protect(server, connection_id(server), session_hash(), crypto::SegmentDirection::server_to_client);

  auto up = pattern(300'000, 1), down = pattern(200'000, 2);
  lab.client.send(up);
  lab.server.send(down);
  lab.run([&] { return lab.server.received.size() == up.size() && lab.client.received.size() == down.size(); });
  CHECK(lab.server.received == up);
  CHECK(lab.client.received == down);
  lab.run([] { return false; }, 10);  // the last ACKs in flight
  const auto& c = guard.counters();
  CHECK(c.signed_segments > 100);
  CHECK(c.verified_segments == c.signed_segments);  // nothing lost on this path
  CHECK(c.dropped_bad == 0);
  CHECK(c.dropped_missing == 0);
  CHECK(lab.largest_packet <= 1500);  // the option fits: lwIP's MSS left room for it

  // In-window forgeries: one with a made-up MAC, one with none.
  uint32_t rcv_nxt = client->rcv_nxt;
  lab.inject(lab.c(), injected(lab, client, true));
  lab.inject(lab.c(), injected(lab, client, false));
  lab.run([] { return false; }, 5);
  CHECK(guard.counters().dropped_bad == 1);
  CHECK(guard.counters().dropped_missing == 1);
  CHECK(client->rcv_nxt == rcv_nxt);
  CHECK(lab.client.received == down);

  // And the genuine stream goes on.
  auto more = pattern(50'000, 3);
  lab.server.send(more);
  lab.run([&] { return lab.client.received.size() == down.size() + more.size(); });
  down.insert(down.end(), more.begin(), more.end());
  CHECK(lab.client.received == down);

  // Unprotected flows pass untouched; a forgotten flow is no longer checked.
  guard.forget(flow_of(client));
  CHECK_FALSE(guard.is_protected(flow_of(client)));
}

TEST_CASE("the same forgery without the guard corrupts the stream (why the option exists)") {
  Lab lab;
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  lab.inject(lab.c(), injected(lab, client, false));
  lab.run([] { return false; }, 5);
  CHECK(lab.client.received == std::vector<uint8_t>(100, 0xEE));  // taken as the server's bytes
}

// A segment "from the client" to `flow` (as the server end at `flow.local` sees it), in
// window, with a made-up MAC or none.
// `key`: sign it with this key (as the client would with it), instead of a made-up tag.
std::vector<uint8_t> forged_from_client(const tcp_pcb* client, const FlowKey& flow, bool with_mac,
                                        const crypto::SegmentMacKey* key = nullptr) {
  std::vector<uint8_t> option = {253, 16, 0x52, 0x53, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7};
  std::vector<uint8_t> payload(64, 0xCD);
  if (key != nullptr) {
    const uint8_t flags = wire::TcpSegmentView::ACK | wire::TcpSegmentView::PSH;
    auto tag = key->tag({crypto::SegmentDirection::client_to_server, connection_id(client), client->snd_nxt,
                         client->rcv_nxt, flags, 1000, payload});
    std::copy(tag.begin(), tag.end(), option.begin() + 4);
  }
  std::vector<uint8_t> packet(40 + 60 + payload.size());
  size_t length = 0;
  auto fill = [&](auto& f) {
    std::copy_n(flow.remote.bytes.begin(), f.src.size(), f.src.begin());
    std::copy_n(flow.local.bytes.begin(), f.dst.size(), f.dst.begin());
    f.src_port = flow.remote_port;
    f.dst_port = flow.local_port;
    f.seq = client->snd_nxt;
    f.ack = client->rcv_nxt;
    f.flags = wire::TcpSegmentView::ACK | wire::TcpSegmentView::PSH;
    f.window = 1000;
    if (with_mac) f.options = option;
  };
  if (flow.local.version == 4) {
    wire::Ipv4TcpFields f;
    fill(f);
    length = wire::build_ipv4_tcp(packet, f, payload);
  } else {
    wire::Ipv6TcpFields f;
    fill(f);
    length = wire::build_ipv6_tcp(packet, f, payload);
  }
  REQUIRE(length > 0);
  packet.resize(length);
  return packet;
}

TEST_CASE("a moved connection stays protected at its new host: the state travels in the snapshot") {
  for (int family : {4, 6}) {
    CAPTURE(family);
    Lab lab(family);
    migrate::MigrationGuard moves(*lab.node);
    SegmentMacGuard guard(*lab.node);
    lab.connect();
    tcp_pcb* client = lab.client.connection->pcb();
    tcp_pcb* server = lab.server.connection->pcb();
    const uint64_t id = connection_id(client);
    guard.protect(client, id, session_hash(), crypto::SegmentDirection::client_to_server);
    guard.protect(server, id, session_hash(), crypto::SegmentDirection::server_to_client);
    auto up = pattern(40'000, 11), down = pattern(30'000, 12);
    lab.client.send(up);
    lab.server.send(down);
    lab.run([&] { return lab.server.received.size() == up.size() && lab.client.received.size() == down.size(); });

    // A: freeze, silence, capture the snapshot with the MAC state; it goes through its
    // encoding to B, which imports, adopts the state and parks the pcb.
    REQUIRE(migrate::check_movable(server));
    migrate::freeze_pcb(server);
    const FlowKey old_flow = flow_of(server);
    moves.silence(old_flow);
    // Frozen, the pcb is out of lwIP's active list; housekeeping may prune while the
    // target answers. Asked, the move guard keeps the flow's MAC state: a refused move
    // resumes the connection here, signed.
    guard.prune([&](const FlowKey& flow) { return moves.is_silenced(flow); });
    REQUIRE(guard.is_protected(old_flow));
    auto snapshot = migrate::capture_snapshot(server, {}, {});
    REQUIRE(snapshot);
    snapshot->segment_mac = guard.state_of(server);
    REQUIRE(snapshot->segment_mac);
    CHECK(snapshot->segment_mac->connection_id == id);
    CHECK(snapshot->segment_mac->outbound == wire::SegmentMacDirection::server_to_client);
    auto encoded = wire::encode_snapshot(*snapshot);
    auto decoded = wire::decode_snapshot(encoded);
    wire::wipe_bytes(encoded.data(), encoded.size());
    REQUIRE(decoded);
    REQUIRE(decoded->segment_mac);
    auto imported = migrate::import_pcb(*decoded, lab.b());
    REQUIRE(imported);
    migrate::discard_frozen_pcb(lab.server.connection->release());
    guard.forget(old_flow);  // A's side of it is gone
    lab.server.connection = std::make_unique<TcpConnection>(*imported, &lab.server);
    const FlowKey parked = flow_of(*imported);
    guard.adopt(*imported, *decoded->segment_mac);
    moves.park(parked, *imported);
    CHECK(guard.is_protected(parked));
    CHECK(guard.counters().adopted == 1);
    guard.prune();  // the pcb is parked (not in lwIP's list): its adopted state stays
    CHECK(guard.is_protected(parked));

    // Forgeries on the new path, in window: a made-up MAC and none. Both dropped before
    // the guard stage: the pcb stays parked, the server's stream unchanged.
    lab.inject(lab.b(), forged_from_client(client, parked, true));
    lab.inject(lab.b(), forged_from_client(client, parked, false));
    lab.run([] { return false; }, 3);
    CHECK(guard.counters().dropped_bad == 1);
    CHECK(guard.counters().dropped_missing == 1);
    CHECK(moves.is_parked(parked));
    CHECK(lab.server.received == up);

    // The client follows with the key it has (rebind, no registration on any channel):
    // its segments verify at B, the pcb unparks and both directions go on byte-exact.
    FlowKey followed = flow_of(client);
    followed.remote = lab.b();
    REQUIRE(guard.rebind(flow_of(client), followed));
    tcp_pcb* const pcbs[] = {client};
    migrate::rewrite_remote(pcbs, lab.b(), 0);
    auto up2 = pattern(60'000, 13), down2 = pattern(50'000, 14);
    lab.client.send(up2);
    lab.server.send(down2);
    lab.run([&] {
      return lab.server.received.size() == up.size() + up2.size() &&
             lab.client.received.size() == down.size() + down2.size();
    });
    CHECK_FALSE(moves.is_parked(parked));
    up.insert(up.end(), up2.begin(), up2.end());
    down.insert(down.end(), down2.begin(), down2.end());
    CHECK(lab.server.received == up);
    CHECK(lab.client.received == down);
    CHECK(guard.counters().dropped_missing == 1);  // no genuine segment went unsigned
    CHECK(guard.counters().dropped_bad == 1);
    guard.prune();
    CHECK(guard.is_protected(parked));  // now an active pcb
    CHECK(guard.is_protected(followed));

    // And after it unparked, a forgery is still dropped at B.
    const uint32_t rcv_nxt = lab.server.connection->pcb()->rcv_nxt;
    lab.inject(lab.b(), forged_from_client(client, parked, true));
    lab.run([] { return false; }, 3);
    CHECK(guard.counters().dropped_bad == 2);
    CHECK(lab.server.connection->pcb()->rcv_nxt == rcv_nxt);
    CHECK(lab.server.received == up);
  }
}

TEST_CASE("a re-registration rolls the key over without losing a segment; the previous key then stops verifying") {
  Lab lab;
  SegmentMacGuard guard(*lab.node);
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  tcp_pcb* server = lab.server.connection->pcb();
  const uint64_t id = connection_id(client);
  guard.protect(client, id, session_hash(), crypto::SegmentDirection::client_to_server);
  guard.protect(server, id, session_hash(), crypto::SegmentDirection::server_to_client);
  auto first = pattern(20'000, 21);
  lab.client.send(first);
  lab.run([&] { return lab.server.received.size() == first.size(); });

  // The client registers on a new channel and signs with the new key at once; the server
  // switches only when the registration arrives. Meanwhile its previous key still verifies.
  std::array<uint8_t, 64> next_hash = session_hash();
  next_hash[0] ^= 0xFF;
  guard.protect(client, id, next_hash, crypto::SegmentDirection::client_to_server);
  auto second = pattern(30'000, 22);
  lab.client.send(second);
  lab.server.send(second);
  lab.run([&] { return lab.server.received.size() == first.size() + second.size(); }, 20);
  guard.protect(server, id, next_hash, crypto::SegmentDirection::server_to_client);
  lab.run([&] {
    return lab.server.received.size() == first.size() + second.size() && lab.client.received.size() == second.size();
  });
  first.insert(first.end(), second.begin(), second.end());
  CHECK(lab.server.received == first);
  CHECK(lab.client.received == second);
  CHECK(guard.counters().verified_previous_key > 0);
  CHECK(guard.counters().dropped_bad == 0);
  CHECK(guard.counters().dropped_missing == 0);

  // Once the new key verified, the previous one is done: a segment signed with it, in
  // window, is dropped.
  lab.run([] { return false; }, 5);
  crypto::SegmentMacKey old_key(session_hash(), id);
  const uint32_t rcv_nxt = server->rcv_nxt;
  lab.inject(lab.a(), forged_from_client(client, flow_of(server), true, &old_key));
  lab.run([] { return false; }, 3);
  CHECK(guard.counters().dropped_bad == 1);
  CHECK(server->rcv_nxt == rcv_nxt);
  CHECK(lab.server.received == first);
}

TEST_CASE("with TUN offloads: a protected flow's segments are cut and signed one MSS each; others keep TSO") {
  for (int family : {4, 6}) {
    CAPTURE(family);
    Lab lab(family, LinkOffloads{65000, true});
    SegmentMacGuard guard(*lab.node);
    lab.connect();
    tcp_pcb* client = lab.client.connection->pcb();
    tcp_pcb* server = lab.server.connection->pcb();

    // Unprotected: lwIP hands the link multi-MSS segments and the device cuts them.
    auto before = pattern(200'000, 4);
    lab.server.send(before);
    lab.run([&] { return lab.client.received.size() == before.size(); });
    CHECK(lab.client.received == before);
    CHECK_FALSE(lab.segmented_mss().empty());
    CHECK(lab.node->counters().tx_cut == 0);

    // Data queued in multi-MSS segments before the flow is protected, and data after:
    // every packet leaves signed and within the MTU, none for the device to cut. (What the
    // lab carried unsigned before protect() is dropped as missing and retransmitted.)
    auto down = pattern(300'000, 5), up = pattern(150'000, 6);
    lab.server.send(down);
    guard.protect(client, connection_id(client), session_hash(), crypto::SegmentDirection::client_to_server);
    guard.protect(server, connection_id(server), session_hash(), crypto::SegmentDirection::server_to_client);
    const size_t segmented_before = lab.segmented_mss().size();  // what left before protect()
    lab.client.send(up);
    lab.run([&] {
      return lab.client.received.size() == before.size() + down.size() && lab.server.received.size() == up.size();
    });
    auto expected = before;
    expected.insert(expected.end(), down.begin(), down.end());
    CHECK(lab.client.received == expected);
    CHECK(lab.server.received == up);
    CHECK(lab.segmented_mss().size() == segmented_before);
    lab.largest_packet = 0;  // the lab carried packets lwIP had sent before protect()
    auto more = pattern(100'000, 7);
    lab.server.send(more);
    lab.run([&] { return lab.client.received.size() == expected.size() + more.size(); });
    expected.insert(expected.end(), more.begin(), more.end());
    CHECK(lab.client.received == expected);
    CHECK(lab.largest_packet <= 1500);  // signed pieces fit: lwIP's MSS left room for the option
    CHECK(lab.segmented_mss().size() == segmented_before);
    CHECK(lab.node->counters().tx_cut > 0);
    CHECK(lab.node->counters().tx_cut_pieces > lab.node->counters().tx_cut);
    CHECK(guard.counters().dropped_bad == 0);
    CHECK(guard.counters().verified_segments > 200);

    // An in-window forgery is dropped there too.
    if (family == 4) {
      const uint32_t rcv_nxt = client->rcv_nxt;
      lab.inject(lab.c(), injected(lab, client, true));
      lab.run([] { return false; }, 5);
      CHECK(guard.counters().dropped_bad == 1);
      CHECK(client->rcv_nxt == rcv_nxt);
      CHECK(lab.client.received == expected);
    }
  }
}

}  // namespace
