// Node with the real lwIP behind a fake link: malformed input is counted by kind and never
// reaches lwIP; valid segments do, and lwIP answers them.
#include "stack/node.hpp"

#include <doctest/doctest.h>

#include "stack/tcp_listener.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/fake_link.hpp"

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
  f.node->add_input_filter(&filter);
  f.link->inject(f.segment(40003, 7999, TcpSegmentView::SYN, 5));
  f.turn();
  CHECK(filter.seen == 1);
  CHECK(f.node->counters().rx_filtered == 1);
  CHECK(f.link->sent.empty());
}
