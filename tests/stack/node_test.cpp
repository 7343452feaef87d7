// Node with the real lwIP behind a fake link: malformed input is counted by kind and never
// reaches lwIP; valid segments do, and lwIP answers them. The input stages run in their
// fixed order whatever order their filters were added in, see the packet parsed once, and
// (with the real SegmentMacGuard and MigrationGuard in the lwIP lab) a segment whose MAC
// fails unparks nothing.
#include "stack/node.hpp"

#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <string>

#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/tcp_listener.hpp"
#include "stack/wire/handover_segment.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/fake_link.hpp"
#include "support/lwip_lab.hpp"
#include "support/server_move.hpp"

namespace {

using namespace roam;
using roam::testing::FakeLink;
using wire::TcpSegmentView;

constexpr std::array<uint8_t, 4> node_address{198, 18, 12, 2};
constexpr std::array<uint8_t, 4> peer_address{198, 18, 11, 2};

struct NodeFixture {
  uv_loop_t loop{};
  std::unique_ptr<Node> node;
  FakeLink* link = nullptr;

  NodeFixture() {
    uv_loop_init(&loop);
    node = std::make_unique<Node>(&loop);
    auto fake = std::make_unique<FakeLink>();
    link = fake.get();
    InterfaceConfig config;
    config.address4 = *IpAddress::parse("198.18.12.2");
    REQUIRE(node->add_interface(std::move(fake), config));
  }
  ~NodeFixture() {
    node->close();
    uv_run(&loop, UV_RUN_NOWAIT);
    node.reset();
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
  }

  std::vector<uint8_t> segment(uint16_t src_port, uint16_t dst_port, uint8_t flags, uint32_t seq,
                               std::span<const uint8_t> payload = {}) {
    wire::Ipv4TcpFields fields;
    fields.src = peer_address;
    fields.dst = node_address;
    fields.src_port = src_port;
    fields.dst_port = dst_port;
    fields.flags = flags;
    fields.seq = seq;
    fields.window = 65535;
    std::vector<uint8_t> out(wire::ipv4_tcp_packet_size(0, payload.size()));
    REQUIRE(wire::build_ipv4_tcp(out, fields, payload) == out.size());
    return out;
  }

  // Runs pending lwIP output (links are flushed per loop iteration).
  void turn() { uv_run(&loop, UV_RUN_NOWAIT); }
};

TcpSegmentView parse_reply(const std::vector<uint8_t>& packet) {
  auto info = wire::check_ip_packet(packet);
  REQUIRE(info);
  auto tcp = wire::parse_tcp_segment(packet, *info);
  REQUIRE(tcp);
  return *tcp;
}

}  // namespace

TEST_CASE("a SYN to a listening port gets a SYN-ACK from lwIP, with window scaling") {
  NodeFixture f;
  auto listener = TcpListener::listen(7000, [](tcp_pcb* pcb) {
    tcp_abort(pcb);
    return false;
  });
  REQUIRE(listener);
  // SYN with MSS 1460 and window scale 7 (kind 2 len 4, NOP, kind 3 len 3).
  const std::array<uint8_t, 8> options{2, 4, 0x05, 0xb4, 1, 3, 3, 7};
  wire::Ipv4TcpFields fields;
  fields.src = peer_address;
  fields.dst = node_address;
  fields.src_port = 40000;
  fields.dst_port = 7000;
  fields.flags = TcpSegmentView::SYN;
  fields.seq = 1000;
  fields.window = 65535;
  fields.options = options;
  std::vector<uint8_t> syn(wire::ipv4_tcp_packet_size(options.size(), 0));
  REQUIRE(wire::build_ipv4_tcp(syn, fields, {}) == syn.size());
  f.link->inject(syn);
  f.turn();
  REQUIRE(f.link->sent.size() == 1);
  auto reply = parse_reply(f.link->sent[0]);
  CHECK(reply.has(TcpSegmentView::SYN | TcpSegmentView::ACK));
  CHECK(reply.ack == 1001);
  CHECK(reply.dst_port == 40000);
  bool has_window_scale = false;
  for (size_t i = 0; i + 2 < reply.options.size();) {
    uint8_t kind = reply.options[i];
    if (kind == 1) {
      ++i;
      continue;
    }
    if (kind == 0) break;
    if (kind == 3) has_window_scale = true;
    i += reply.options[i + 1] < 2 ? 2 : reply.options[i + 1];
  }
  CHECK(has_window_scale);
  CHECK(f.node->counters().rx_malformed == 0);
}

TEST_CASE("a SYN to a closed port is answered with RST") {
  NodeFixture f;
  f.link->inject(f.segment(40001, 7999, TcpSegmentView::SYN, 5));
  f.turn();
  REQUIRE(f.link->sent.size() == 1);
  auto reply = parse_reply(f.link->sent[0]);
  CHECK(reply.has(TcpSegmentView::RST));
}

TEST_CASE("each kind of malformed packet is counted by kind and never reaches lwIP") {
  NodeFixture f;
  auto valid = f.segment(40002, 7999, TcpSegmentView::SYN, 5);

  struct Case {
    const char* name;
    std::vector<uint8_t> bytes;
    wire::PacketError kind;
  };
  std::vector<Case> cases;
  cases.push_back({"truncated header", {valid.begin(), valid.begin() + 10}, wire::PacketError::too_short});
  {
    auto b = valid;
    b[0] = 0x55;  // version 5
    cases.push_back({"bad version", b, wire::PacketError::bad_version});
  }
  {
    auto b = valid;
    b[0] = 0x44;  // IHL 4
    cases.push_back({"IHL below 5", b, wire::PacketError::bad_header_length});
  }
  {
    auto b = valid;
    b[2] = 0x05;  // total length 1280+, beyond the buffer
    cases.push_back({"total length beyond buffer", b, wire::PacketError::bad_total_length});
  }
  {
    auto b = valid;
    b[10] ^= 0xFF;
    cases.push_back({"bad IP checksum", b, wire::PacketError::bad_ip_checksum});
  }
  {
    auto b = valid;
    b[20 + 16] ^= 0x01;  // TCP checksum field
    cases.push_back({"bad TCP checksum", b, wire::PacketError::bad_transport_checksum});
  }
  cases.push_back({"empty", {}, wire::PacketError::too_short});

  for (const auto& c : cases) {
    CAPTURE(c.name);
    auto before = f.node->counters().malformed_by_kind[static_cast<size_t>(c.kind)];
    f.link->inject(c.bytes);
    f.turn();
    CHECK(f.node->counters().malformed_by_kind[static_cast<size_t>(c.kind)] == before + 1);
  }
  CHECK(f.node->counters().rx_malformed == cases.size());
  CHECK(f.link->sent.empty());  // lwIP never saw them, so it never answered (no RST)

  // The node is still healthy: the valid packet is answered.
  f.link->inject(valid);
  f.turn();
  CHECK(f.link->sent.size() == 1);
}

TEST_CASE("an input filter that drops a packet keeps it from lwIP and counts it") {
  struct DropAll final : InputFilter {
    int seen = 0;
    FilterVerdict on_input(const InboundPacket& packet) override {
      ++seen;
      CHECK(packet.info.protocol == 6);
      return FilterVerdict::drop;
    }
  } filter;
  NodeFixture f;
  f.node->add_input_filter(InputStage::defense, &filter);
  f.link->inject(f.segment(40003, 7999, TcpSegmentView::SYN, 5));
  f.turn();
  CHECK(filter.seen == 1);
  CHECK(f.node->counters().rx_filtered == 1);
  CHECK(f.node->counters().rx_filtered_by_stage[static_cast<size_t>(InputStage::defense)] == 1);
  CHECK(f.link->sent.empty());
}

namespace {

// Writes its name into a shared log and returns what it was told to.
struct Recorder final : InputFilter {
  Recorder(std::string name_, std::vector<std::string>& log_) : name(std::move(name_)), log(log_) {}
  FilterVerdict on_input(const InboundPacket&) override {
    log.push_back(name);
    return verdict;
  }
  std::string name;
  std::vector<std::string>& log;
  FilterVerdict verdict = FilterVerdict::pass;
};

}  // namespace

TEST_CASE("input stages run in their fixed order whatever order their filters were added in") {
  NodeFixture f;
  std::vector<std::string> log;
  Recorder guard("guard", log), handover1("handover 1", log), handover2("handover 2", log), defense("defense", log),
      authenticate("authenticate", log);
  // Added last stage first, as a server that builds its MigrationGuard before its
  // SegmentMacGuard does.
  f.node->add_input_filter(InputStage::guard, &guard);
  f.node->add_input_filter(InputStage::handover, &handover1);
  f.node->add_input_filter(InputStage::handover, &handover2);
  f.node->add_input_filter(InputStage::defense, &defense);
  f.node->add_input_filter(InputStage::authenticate, &authenticate);

  f.link->inject(f.segment(40004, 7999, TcpSegmentView::SYN, 5));
  f.turn();
  CHECK(log == std::vector<std::string>{"authenticate", "defense", "handover 1", "handover 2", "guard"});
  REQUIRE(f.link->sent.size() == 1);  // passed every stage: lwIP answered (RST, port closed)

  // A drop ends the walk in its stage: the later stages never see the packet, nor lwIP.
  log.clear();
  f.link->sent.clear();
  authenticate.verdict = FilterVerdict::drop;
  f.link->inject(f.segment(40005, 7999, TcpSegmentView::SYN, 5));
  f.turn();
  CHECK(log == std::vector<std::string>{"authenticate"});
  CHECK(f.link->sent.empty());
  const auto& c = f.node->counters();
  CHECK(c.rx_filtered == 1);
  CHECK(c.rx_filtered_by_stage[static_cast<size_t>(InputStage::authenticate)] == 1);
  CHECK(c.rx_filtered_by_stage[static_cast<size_t>(InputStage::guard)] == 0);

  // Removed from its stage; adding a filter again moves it (one stage at a time).
  authenticate.verdict = FilterVerdict::pass;
  f.node->remove_input_filter(&defense);
  f.node->add_input_filter(InputStage::guard, &handover1);
  log.clear();
  f.link->inject(f.segment(40006, 7999, TcpSegmentView::SYN, 5));
  f.turn();
  CHECK(log == std::vector<std::string>{"authenticate", "handover 2", "guard", "handover 1"});
  for (auto* filter : std::initializer_list<InputFilter*>{&guard, &handover1, &handover2, &authenticate})
    f.node->remove_input_filter(filter);
}

TEST_CASE("every stage sees the TCP segment parsed once: ports, numbers, flags, options, payload, flow") {
  struct Inspect final : InputFilter {
    std::optional<InboundTcp> seen;
    FilterVerdict on_input(const InboundPacket& packet) override {
      seen = packet.tcp;
      return FilterVerdict::drop;
    }
  } inspect;
  NodeFixture f;
  f.node->add_input_filter(InputStage::defense, &inspect);
  const std::array<uint8_t, 4> options{2, 4, 0x05, 0xb4};  // MSS 1460
  const std::array<uint8_t, 3> payload{'a', 'b', 'c'};
  wire::Ipv4TcpFields fields;
  fields.src = peer_address;
  fields.dst = node_address;
  fields.src_port = 40007;
  fields.dst_port = 7001;
  fields.seq = 0x01020304;
  fields.ack = 0x0a0b0c0d;
  fields.flags = TcpSegmentView::ACK | TcpSegmentView::PSH;
  fields.window = 4321;
  fields.options = options;
  std::vector<uint8_t> packet(wire::ipv4_tcp_packet_size(options.size(), payload.size()));
  REQUIRE(wire::build_ipv4_tcp(packet, fields, payload) == packet.size());
  f.link->inject(packet);
  REQUIRE(inspect.seen);
  const auto& tcp = *inspect.seen;
  CHECK(tcp.segment.src_port == 40007);
  CHECK(tcp.segment.dst_port == 7001);
  CHECK(tcp.segment.seq == 0x01020304);
  CHECK(tcp.segment.ack == 0x0a0b0c0d);
  CHECK(tcp.segment.flags == (TcpSegmentView::ACK | TcpSegmentView::PSH));
  CHECK(tcp.segment.window == 4321);
  CHECK(tcp.segment.header_length == 24);
  CHECK(tcp.segment.options.size() == 4);
  CHECK(tcp.segment.payload.size() == 3);
  CHECK(tcp.flow.local == *IpAddress::parse("198.18.12.2"));
  CHECK(tcp.flow.remote == *IpAddress::parse("198.18.11.2"));
  CHECK(tcp.flow.local_port == 7001);
  CHECK(tcp.flow.remote_port == 40007);
  CHECK(tcp.flow == *inbound_flow(packet));
  CHECK_FALSE(tcp.handover_option);

  // Not TCP: no view (a UDP datagram reaches the filters with tcp unset).
  inspect.seen.reset();
  std::vector<uint8_t> udp = packet;
  udp.resize(28);
  udp[2] = 0;
  udp[3] = 28;
  udp[9] = 17;
  udp[10] = udp[11] = 0;
  const uint16_t ip_sum = wire::internet_checksum(std::span<const uint8_t>(udp).first(20));
  udp[10] = static_cast<uint8_t>(ip_sum >> 8);
  udp[11] = static_cast<uint8_t>(ip_sum);
  udp[24] = 0;
  udp[25] = 8;     // UDP length
  udp[26] = udp[27] = 0;  // no checksum (allowed over IPv4)
  bool reached = false;
  struct Seen final : InputFilter {
    bool& reached;
    explicit Seen(bool& r) : reached(r) {}
    FilterVerdict on_input(const InboundPacket& p) override {
      reached = true;
      CHECK_FALSE(p.tcp);
      return FilterVerdict::drop;
    }
  } seen(reached);
  f.node->remove_input_filter(&inspect);
  f.node->add_input_filter(InputStage::guard, &seen);
  f.link->inject(udp);
  CHECK(reached);
  f.node->remove_input_filter(&seen);
}

TEST_CASE("a handover segment no handover filter takes never reaches lwIP") {
  NodeFixture f;
  wire::HandoverSegment syn;
  syn.src = *IpAddress::parse("198.18.11.2");
  syn.dst = *IpAddress::parse("198.18.12.2");
  syn.src_port = 40008;
  syn.dst_port = 7999;
  syn.seq = 99;
  syn.option.connection_id = 42;
  std::vector<uint8_t> packet(wire::handover_packet_max_bytes);
  packet.resize(wire::build_handover_segment(packet, syn));
  REQUIRE(!packet.empty());
  f.link->inject(packet);
  f.turn();
  CHECK(f.link->sent.empty());  // no RST from lwIP: it never saw it
  CHECK(f.node->counters().rx_handover_unclaimed == 1);
  CHECK(f.node->counters().rx_filtered_by_stage[static_cast<size_t>(InputStage::handover)] == 1);
}

namespace {

std::array<uint8_t, 64> channel_hash() {
  std::array<uint8_t, 64> h{};
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<uint8_t>(i * 7 + 5);
  return h;
}

// A segment "from the client" to the moved server end at B, in its window, with a made-up
// segment MAC: TCP alone would take it.
std::vector<uint8_t> forged_to_b(const testing::PeerLab& lab, const tcp_pcb* client, const FlowKey& parked) {
  wire::Ipv4TcpFields f;
  std::copy_n(lab.c().bytes.begin(), 4, f.src.begin());
  std::copy_n(lab.b().bytes.begin(), 4, f.dst.begin());
  f.src_port = parked.remote_port;
  f.dst_port = parked.local_port;
  f.seq = client->snd_nxt;
  f.ack = client->rcv_nxt;
  f.flags = TcpSegmentView::ACK | TcpSegmentView::PSH;
  f.window = 1000;
  const std::vector<uint8_t> option = {253, 16, 0x52, 0x53, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  f.options = option;
  std::vector<uint8_t> payload(50, 0xAB);
  std::vector<uint8_t> packet(wire::ipv4_tcp_packet_size(f.options.size(), payload.size()));
  REQUIRE(wire::build_ipv4_tcp(packet, f, payload) == packet.size());
  return packet;
}

}  // namespace

TEST_CASE("a parked connection is not unparked by a segment whose MAC fails (authenticate before guard)") {
  testing::PeerLab lab;
  // The guard first, as construction order once made it run first.
  migrate::MigrationGuard guard(*lab.node);
  SegmentMacGuard macs(*lab.node);
  lab.connect();
  tcp_pcb* client = lab.client.connection->pcb();
  tcp_pcb* server = lab.server.connection->pcb();
  const uint64_t id = connection_id(client);
  macs.protect(client, id, channel_hash(), crypto::SegmentDirection::client_to_server);
  macs.protect(server, id, channel_hash(), crypto::SegmentDirection::server_to_client);
  auto before = testing::pattern(20'000, 7);
  lab.client.send(before);
  lab.run([&] { return lab.server.received.size() == before.size(); });

  // A moves its end to B; the MAC state goes with the snapshot.
  const FlowKey old_server_flow = flow_of(server);
  auto state = macs.state_of(server);
  REQUIRE(state);
  auto moved = testing::move_server_end(lab, guard);
  macs.forget(old_server_flow);
  macs.adopt(moved.pcb, *state);
  REQUIRE(guard.is_parked(moved.parked));
  REQUIRE(macs.is_protected(moved.parked));

  // A forgery on the new path, in window, with a wrong MAC: dropped in the authenticate
  // stage; the guard never sees it, so the pcb stays parked and lwIP never saw it.
  const uint64_t unparked_before = guard.counters().unparked;
  lab.inject(lab.b(), forged_to_b(lab, client, moved.parked));
  lab.run([] { return false; }, 3);
  CHECK(guard.is_parked(moved.parked));
  CHECK(guard.counters().unparked == unparked_before);
  CHECK(macs.counters().dropped_bad == 1);
  CHECK(lab.node->counters().rx_filtered_by_stage[static_cast<size_t>(InputStage::authenticate)] == 1);
  CHECK(lab.server.received == before);

  // The client follows, signing with the same key (no new registration): its genuine
  // segments verify at B, unpark the pcb, and the stream goes on byte-exact.
  // (Rebound before the rewrite restarts transmission, so its first segment is signed.)
  const FlowKey old_client_flow = flow_of(client);
  FlowKey new_client_flow = old_client_flow;
  new_client_flow.remote = lab.b();
  REQUIRE(macs.rebind(old_client_flow, new_client_flow));
  tcp_pcb* const pcbs[] = {client};
  migrate::rewrite_remote(pcbs, lab.b(), 0);
  REQUIRE(flow_of(client) == new_client_flow);
  auto after = testing::pattern(30'000, 8);
  lab.client.send(after);
  lab.server.send(after);
  lab.run([&] {
    return lab.server.received.size() == before.size() + after.size() && lab.client.received.size() == after.size();
  });
  CHECK_FALSE(guard.is_parked(moved.parked));
  CHECK(guard.counters().unparked == unparked_before + 1);
  before.insert(before.end(), after.begin(), after.end());
  CHECK(lab.server.received == before);
  CHECK(lab.client.received == after);
  CHECK(macs.counters().dropped_missing == 0);
}

TEST_CASE("a changed own address: pcbs rebound first survive, those left on the old one are aborted, listeners follow") {
  NodeFixture f;
  const IpAddress old_address = *IpAddress::parse("198.18.12.2");
  const IpAddress new_address = *IpAddress::parse("198.18.22.2");
  CHECK_FALSE(f.node->change_address(*IpAddress::parse("198.18.12.9"), new_address));  // not ours
  CHECK_FALSE(f.node->change_address(old_address, *IpAddress::parse("2001:db8::2")));   // another family
  CHECK(*f.node->interface_address(0, 4) == old_address);

  auto listener = TcpListener::listen(7000, [](tcp_pcb* pcb) {
    tcp_abort(pcb);
    return false;
  });
  REQUIRE(listener);
  bool left_aborted = false;
  bool moved_aborted = false;
  auto open = [&](bool* aborted) {
    tcp_pcb* pcb = tcp_new_ip_type(IPADDR_TYPE_V4);
    REQUIRE(pcb != nullptr);
    tcp_arg(pcb, aborted);
    tcp_err(pcb, [](void* arg, err_t) { *static_cast<bool*>(arg) = true; });
    ip_addr_t remote;
    IP_ADDR4(&remote, 198, 18, 11, 2);
    REQUIRE(tcp_connect(pcb, &remote, 80, nullptr) == ERR_OK);
    return pcb;
  };
  open(&left_aborted);  // left on the old address
  tcp_pcb* moved = open(&moved_aborted);
  tcp_pcb* const rebind[] = {moved};
  migrate::rewrite_local(std::span<tcp_pcb* const>(rebind), new_address);

  REQUIRE(f.node->change_address(old_address, new_address));
  CHECK(left_aborted);  // lwIP aborted it: its pcb is gone
  CHECK_FALSE(moved_aborted);
  CHECK(*f.node->interface_address(0, 4) == new_address);
  CHECK(f.node->describe_interface(0).find("198.18.22.2/32") != std::string::npos);

  // The listener answers on the new address.
  f.link->sent.clear();
  wire::Ipv4TcpFields fields;
  fields.src = peer_address;
  fields.dst = {198, 18, 22, 2};
  fields.src_port = 40000;
  fields.dst_port = 7000;
  fields.flags = TcpSegmentView::SYN;
  fields.seq = 1000;
  fields.window = 65535;
  std::vector<uint8_t> syn(wire::ipv4_tcp_packet_size(0, 0));
  REQUIRE(wire::build_ipv4_tcp(syn, fields, {}) == syn.size());
  f.link->inject(syn);
  f.turn();
  bool answered = false;
  for (const auto& packet : f.link->sent) {
    auto reply = parse_reply(packet);
    if (reply.dst_port == 40000 && reply.has(TcpSegmentView::SYN | TcpSegmentView::ACK)) answered = true;
  }
  CHECK(answered);
  tcp_arg(moved, nullptr);
  tcp_err(moved, nullptr);
  tcp_abort(moved);
}

TEST_CASE("a changed own IPv6 address replaces the old one on the interface") {
  uv_loop_t loop{};
  uv_loop_init(&loop);
  {
    Node node(&loop);
    InterfaceConfig config;
    config.address4 = *IpAddress::parse("198.18.12.2");
    config.address6 = *IpAddress::parse("2001:db8:12::2");
    REQUIRE(node.add_interface(std::make_unique<FakeLink>(), config));
    CHECK_FALSE(node.change_address(*IpAddress::parse("2001:db8:12::9"), *IpAddress::parse("2001:db8:22::2")));
    REQUIRE(node.change_address(*IpAddress::parse("2001:db8:12::2"), *IpAddress::parse("2001:db8:22::2")));
    CHECK(*node.interface_address(0, 6) == *IpAddress::parse("2001:db8:22::2"));
    CHECK(*node.interface_address(0, 4) == *IpAddress::parse("198.18.12.2"));
    // lwIP's own view: the new address is valid on the netif, the old one is gone.
    const netif* n = netif_default;
    REQUIRE(n != nullptr);
    bool has_new = false;
    bool has_old = false;
    for (s8_t i = 0; i < LWIP_IPV6_NUM_ADDRESSES; ++i) {
      if (!ip6_addr_isvalid(netif_ip6_addr_state(n, i))) continue;
      auto address = *IpAddress::parse("2001:db8:22::2");
      auto old_address = *IpAddress::parse("2001:db8:12::2");
      if (std::memcmp(netif_ip6_addr(n, i)->addr, address.bytes.data(), 16) == 0) has_new = true;
      if (std::memcmp(netif_ip6_addr(n, i)->addr, old_address.bytes.data(), 16) == 0) has_old = true;
    }
    CHECK(has_new);
    CHECK_FALSE(has_old);
    node.close();
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  uv_run(&loop, UV_RUN_NOWAIT);
  uv_loop_close(&loop);
}
