// The NAT handover against the real lwIP (stack/migrate/handover_initiator, _responder):
// the lab's client C talks to A; the server end moves to B (snapshot, import, parked) and
// the client follows with a synthetic SYN. A NAT in the lab rewrites the client's address
// and port on the way to B, so B must learn them from the SYN and rebind the parked
// connection. Both byte streams must stay exact; every bad synthetic segment is dropped,
// counted, and changes nothing.
#include <doctest/doctest.h>

#include <vector>

#include "crypto/handover_mac.hpp"
#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/lwip_address.hpp"
#include "stack/migrate/handover_initiator.hpp"
#include "stack/migrate/handover_responder.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/wire/checksum.hpp"
#include "stack/wire/handover_segment.hpp"
#include "stack/wire/ip_packet.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/lwip_lab.hpp"
#include "support/server_move.hpp"

namespace {

using namespace roam;
using roam::testing::pattern;

const IpAddress nat_address = *IpAddress::parse("198.18.13.99");  // on B's link
constexpr uint16_t nat_port_shift = 1000;

uint16_t be16(const std::vector<uint8_t>& p, size_t at) {
  return static_cast<uint16_t>((p[at] << 8) | p[at + 1]);
}
void put16(std::vector<uint8_t>& p, size_t at, uint16_t v) {
  p[at] = static_cast<uint8_t>(v >> 8);
  p[at + 1] = static_cast<uint8_t>(v);
}

// IPv4 header and TCP checksums of a packet the test changed.
void fix_checksums(std::vector<uint8_t>& p) {
  size_t ihl = static_cast<size_t>(p[0] & 0x0F) * 4;
  put16(p, 10, 0);
  put16(p, 10, wire::internet_checksum(std::span<const uint8_t>(p.data(), ihl)));
  size_t tcp_length = be16(p, 2) - ihl;
  put16(p, ihl + 16, 0);
  uint32_t pseudo =
      wire::pseudo_header_sum_v4(std::span<const uint8_t, 4>(p.data() + 12, 4),
                                 std::span<const uint8_t, 4>(p.data() + 16, 4), 6, static_cast<uint16_t>(tcp_length));
  put16(p, ihl + 16,
        wire::checksum_fold(wire::checksum_add(pseudo, std::span<const uint8_t>(p.data() + ihl, tcp_length))));
}

bool is_tcp_from_to(const std::vector<uint8_t>& p, const IpAddress& src, const IpAddress& dst) {
  return (p[0] >> 4) == 4 && p[9] == 6 && std::equal(p.begin() + 12, p.begin() + 16, src.bytes.begin()) &&
         std::equal(p.begin() + 16, p.begin() + 20, dst.bytes.begin());
}

bool is_handover_syn(std::span<const uint8_t> packet) {
  auto info = wire::check_ip_packet(packet);
  if (!info || info->protocol != 6) return false;
  auto tcp = wire::parse_tcp_segment(packet, info.value());
  wire::HandoverOption option;
  return tcp && tcp->flags == wire::TcpSegmentView::SYN &&
         wire::find_handover_option(tcp->options, option) == wire::MacOptionLookup::found;
}

struct HandoverLab {
  testing::PeerLab lab{4};
  std::vector<std::pair<FlowKey, bool>> done;
  // Initiator and responder before the guard in the input chain, as in the apps.
  migrate::HandoverInitiator initiator{*lab.node,
                                       [this](const FlowKey& f, bool answered) { done.emplace_back(f, answered); }};
  migrate::HandoverResponder responder{*lab.node, true,
                                       [this](const FlowKey& from, const IpAddress& client, uint16_t port) {
                                         FlowKey to = from;
                                         to.remote = client;
                                         to.remote_port = port;
                                         return guard.repark(from, to);
                                       }};
  migrate::MigrationGuard guard{*lab.node};
  crypto::HandoverToken token = crypto::random_handover_token();
  FlowKey parked;
  uint64_t id = 0;

  // The NAT in front of the client: toward B, C:p becomes nat_address:p+1000.
  void nat_on() {
    lab.translate = [this](std::vector<uint8_t>& p) {
      size_t ihl = static_cast<size_t>(p[0] & 0x0F) * 4;
      if (is_tcp_from_to(p, lab.c(), lab.b())) {
        std::copy_n(nat_address.bytes.begin(), 4, p.begin() + 12);
        put16(p, ihl, static_cast<uint16_t>(be16(p, ihl) + nat_port_shift));
      } else if (is_tcp_from_to(p, lab.b(), nat_address)) {
        std::copy_n(lab.c().bytes.begin(), 4, p.begin() + 16);
        put16(p, ihl + 2, static_cast<uint16_t>(be16(p, ihl + 2) - nat_port_shift));
      } else {
        return;
      }
      fix_checksums(p);
    };
  }

  void start_streams() {
    lab.connect();
    lab.server.to_send = pattern(2 << 20, 11);
    lab.client.to_send = pattern(1 << 20, 12);
    lab.server.pump();
    lab.client.pump();
    lab.run([&] { return lab.client.received.size() > (512 << 10) && lab.server.received.size() > (256 << 10); });
  }

  // A hands the server end to B (parked, handover expected); the client points at B
  // without restarting and sends its SYN.
  void move_server() {
    id = connection_id(lab.server.connection->pcb());
    REQUIRE(id != 0);
    auto moved = testing::move_server_end(lab, guard);
    parked = moved.parked;
    responder.expect(id, token, parked, moved.snapshot.send.snd_nxt);
    tcp_pcb* client_pcb = lab.client.connection->pcb();
    tcp_pcb* pcbs[] = {client_pcb};
    for (const auto& old_flow : migrate::rewrite_remote(pcbs, lab.b(), 0, false)) guard.silence(old_flow);
    REQUIRE(initiator.start(client_pcb, id, token, now()));
  }

  // The loop's time, fed to the initiator as its owner (the Follower) does.
  uint64_t now() { return uv_now(lab.node->loop()); }
  void tick() { initiator.on_time(now()); }

  void finish_streams() {
    lab.run([&] {
      tick();
      if (!done.empty()) {
        for (auto& [flow, answered] : done)
          if (tcp_pcb* pcb = find_active_pcb(flow)) migrate::restart_transmission(pcb);
        done.clear();
      }
      return lab.client.received.size() == lab.server.to_send.size() &&
             lab.server.received.size() == lab.client.to_send.size();
    });
    INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size(), "; server received ",
         lab.server.received.size(), " of ", lab.client.to_send.size());
    CHECK(lab.client.received == lab.server.to_send);
    CHECK(lab.server.received == lab.client.to_send);
    CHECK_FALSE(lab.client.failed);
    CHECK_FALSE(lab.server.failed);
    CHECK(lab.rst_seen == 0);
  }
};

TEST_CASE("handover through a NAT that changes the client's address and port keeps both streams exact") {
  HandoverLab h;
  h.start_streams();
  h.nat_on();
  h.move_server();
  h.finish_streams();
  // One SYN-ACK, or more when a retried SYN crossed it (a slow run): the first is taken,
  // the others are stray, each is followed by a window update that is consumed.
  const auto& r = h.responder.counters();
  const auto& i = h.initiator.counters();
  CHECK(r.syns_accepted == 1);
  CHECK(r.synacks_sent == 1 + r.syns_repeated);
  CHECK(i.synacks_accepted == 1);
  CHECK(i.synacks_stray == r.synacks_sent - 1);
  CHECK(i.window_acks_consumed == r.synacks_sent);  // the server's window updates
  CHECK(i.window_acks_sent == 1);
  CHECK(r.window_acks_consumed == 1);  // the client's
  CHECK(i.synacks_forged == 0);
  CHECK(h.guard.counters().unparked == 1);
  // B talks to the client where the NAT put it.
  tcp_pcb* server_pcb = h.lab.server.connection->pcb();
  CHECK(from_lwip(server_pcb->remote_ip) == nat_address);
  CHECK(server_pcb->remote_port == static_cast<uint16_t>(h.parked.remote_port + nat_port_shift));
  CHECK(from_lwip(server_pcb->local_ip) == h.lab.b());
}

TEST_CASE("handover without a NAT: the same handshake, nothing to rebind") {
  HandoverLab h;
  h.start_streams();
  h.move_server();
  h.finish_streams();
  CHECK(h.responder.counters().syns_accepted == 1);
  CHECK(h.initiator.counters().synacks_accepted == 1);
  CHECK(from_lwip(h.lab.server.connection->pcb()->remote_ip) == h.lab.c());
}

// A copy of `packet` with `mutate` applied and the checksums made right again.
std::vector<uint8_t> altered(const std::vector<uint8_t>& packet,
                             const std::function<void(std::vector<uint8_t>&)>& mutate) {
  std::vector<uint8_t> out = packet;
  mutate(out);
  fix_checksums(out);
  return out;
}

TEST_CASE("forged, replayed, unknown and malformed handover segments are dropped, counted, and change nothing") {
  HandoverLab h;
  h.start_streams();
  h.nat_on();
  // Hold back the client's SYNs: the test delivers them itself.
  std::vector<std::vector<uint8_t>> syns;
  h.lab.lose = [&syns](std::span<const uint8_t> p) {
    if (!is_handover_syn(p)) return false;
    syns.emplace_back(p.begin(), p.end());
    return true;
  };
  h.move_server();
  h.lab.run([&] { return !syns.empty(); });
  REQUIRE(!syns.empty());
  std::vector<uint8_t> syn = syns.front();  // as the client sent it (C -> B)
  h.lab.translate(syn);                     // as it reaches B through the NAT
  const size_t ihl = 20;
  const size_t option_at = ihl + 20 + 8;  // after MSS and NOP + window scale
  REQUIRE(syn[option_at] == 253);
  const auto& r = h.responder.counters();
  auto b_sent_nothing = [&] {
    h.lab.run([] { return false; }, 3);
    return r.synacks_sent == 0 && h.guard.is_parked(h.parked);
  };

  h.lab.inject(h.lab.b(), altered(syn, [&](auto& p) { p[option_at + 16 + 3] ^= 1; }));  // tag
  CHECK(r.syns_forged == 1);
  h.lab.inject(h.lab.b(), altered(syn, [&](auto& p) { p[ihl + 4 + 3] ^= 1; }));  // seq: tag no longer fits
  CHECK(r.syns_forged == 2);
  h.lab.inject(h.lab.b(), altered(syn, [&](auto& p) { p[option_at + 4 + 7] ^= 1; }));  // connection id
  CHECK(r.syns_unknown == 1);
  h.lab.inject(h.lab.b(), altered(syn, [&](auto& p) { p[option_at + 1] = 27; }));  // option length
  CHECK(r.syns_malformed == 1);
  h.lab.inject(h.lab.b(), altered(syn, [&](auto& p) { p[ihl + 13] |= 0x01; }));  // SYN + FIN
  CHECK(r.syns_malformed == 2);
  CHECK(b_sent_nothing());
  CHECK(r.syns_accepted == 0);

  // A forged SYN-ACK for the pending handover (right ack, wrong tag) and a stray one
  // with our option on a flow with no handover.
  tcp_pcb* client_pcb = h.lab.client.connection->pcb();
  wire::HandoverSegment forged;
  forged.src = h.lab.b();
  forged.dst = h.lab.c();
  forged.src_port = 7000;
  forged.dst_port = client_pcb->local_port;
  forged.syn_ack = true;
  forged.seq = 1;
  forged.ack = (be16(syns.front(), ihl + 4) << 16 | be16(syns.front(), ihl + 6)) + 1u;
  forged.option.connection_id = h.id;
  std::vector<uint8_t> packet(wire::handover_packet_max_bytes);
  packet.resize(wire::build_handover_segment(packet, forged));
  h.lab.inject(h.lab.c(), packet);
  CHECK(h.initiator.counters().synacks_forged == 1);
  CHECK(h.initiator.is_pending(flow_of(client_pcb)));
  forged.dst_port = static_cast<uint16_t>(client_pcb->local_port + 1);
  packet.assign(wire::handover_packet_max_bytes, 0);
  packet.resize(wire::build_handover_segment(packet, forged));
  h.lab.inject(h.lab.c(), packet);
  CHECK(h.initiator.counters().synacks_stray == 1);

  // The genuine SYN is accepted once; again from the same place it is answered again;
  // from another port (someone replaying it) it changes nothing.
  h.lab.lose = nullptr;
  h.lab.inject(h.lab.b(), syn);
  CHECK(r.syns_accepted == 1);
  FlowKey rebound = h.parked;
  rebound.remote = nat_address;
  rebound.remote_port = static_cast<uint16_t>(h.parked.remote_port + nat_port_shift);
  CHECK(h.guard.is_parked(rebound));
  h.lab.inject(h.lab.b(), altered(syn, [&](auto& p) { put16(p, ihl, static_cast<uint16_t>(be16(p, ihl) + 1)); }));
  CHECK(r.syns_replayed == 1);
  CHECK(h.guard.is_parked(rebound));
  h.lab.inject(h.lab.b(), syn);
  CHECK(r.syns_repeated == 1);
  CHECK(r.synacks_sent == 2);
  h.finish_streams();
  // Every SYN-ACK after the first (the repeat above, and answers to the client's own
  // retries still in flight, as many as the timing gave) reached a client no longer
  // waiting for one: stray, like the forged one to another port before.
  CHECK(h.initiator.counters().synacks_accepted == 1);
  CHECK(h.initiator.counters().synacks_stray == 1 + (r.synacks_sent - 1));
  CHECK(r.syns_repeated == r.synacks_sent - 1);
  CHECK(r.syns_accepted == 1);
  CHECK(r.syns_replayed == 1);
}

TEST_CASE("a handover nobody answers gives up after its last SYN and reports it") {
  HandoverLab h;
  h.start_streams();
  size_t dropped = 0;
  h.lab.lose = [&dropped](std::span<const uint8_t> p) {
    if (!is_handover_syn(p)) return false;
    ++dropped;
    return true;
  };
  h.move_server();
  h.lab.run([&] {
    h.tick();
    return !h.done.empty();
  });
  REQUIRE(h.done.size() == 1);
  CHECK_FALSE(h.done.front().second);
  CHECK(dropped == static_cast<size_t>(migrate::HandoverInitiator::max_syns));
  CHECK(h.initiator.counters().handovers_failed == 1);
  CHECK(h.initiator.counters().syns_sent == static_cast<uint64_t>(migrate::HandoverInitiator::max_syns));
  CHECK(h.initiator.counters().output_held > 0);  // its own segments stayed off the wire
  CHECK(h.responder.counters().syns_accepted == 0);
  CHECK(h.guard.is_parked(h.parked));
  h.guard.unpark_all();  // as the server does at shutdown: its session closes a registered pcb
}

TEST_CASE("a responder with the handover off drops synthetic SYNs and answers none") {
  HandoverLab h;
  migrate::HandoverResponder off(*h.lab.node, false, [](const FlowKey&, const IpAddress&, uint16_t) {
    FAIL("an off responder rebinds nothing");
    return static_cast<tcp_pcb*>(nullptr);
  });
  h.lab.node->remove_input_filter(&h.responder);  // only the off one sees it
  wire::HandoverSegment syn;
  syn.src = h.lab.c();
  syn.dst = h.lab.b();
  syn.src_port = 40000;
  syn.dst_port = testing::lab_port;
  syn.seq = 99;
  syn.option.connection_id = 42;
  std::vector<uint8_t> packet(wire::handover_packet_max_bytes);
  packet.resize(wire::build_handover_segment(packet, syn));
  h.lab.inject(h.lab.b(), packet);
  CHECK(off.counters().syns_refused == 1);
  h.lab.run([] { return false; }, 3);
  CHECK(h.lab.pending_from(h.lab.b()) == 0);
  CHECK(h.lab.rst_seen == 0);  // and lwIP's listener never saw it
  h.lab.node->add_input_filter(InputStage::handover, &h.responder);
}

}  // namespace
