// Transparent mode in lwIP (stack/transparent_listener, stack/transparent_guard, lwIP patch
// "transparent"): a Node with an overlay link and a transparent link. A SYN from the
// kernel's address to any accepted destination on the transparent link is answered there
// as that destination and ends in an accepted pcb with the dialled address and port; a
// refused destination gets RST and is counted; the same SYN arriving on the overlay link
// reaches nothing; non-TCP and foreign sources are dropped and counted. The guard's
// decision is also tested as the pure function it is.
#include "stack/transparent_listener.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "stack/lwip_address.hpp"
#include "stack/node.hpp"
#include "stack/transparent_guard.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/fake_link.hpp"

namespace {

using namespace roam;
using roam::testing::FakeLink;
using wire::TcpSegmentView;

IpAddress ip(const char* text) {
  auto address = IpAddress::parse(text);
  REQUIRE(address);
  return *address;
}

std::array<uint8_t, 4> v4(const char* text) {
  auto address = ip(text);
  return {address.bytes[0], address.bytes[1], address.bytes[2], address.bytes[3]};
}

std::vector<uint8_t> segment(const char* src, uint16_t src_port, const char* dst, uint16_t dst_port, uint8_t flags,
                             uint32_t seq, uint32_t ack = 0) {
  wire::Ipv4TcpFields fields;
  fields.src = v4(src);
  fields.dst = v4(dst);
  fields.src_port = src_port;
  fields.dst_port = dst_port;
  fields.flags = flags;
  fields.seq = seq;
  fields.ack = ack;
  fields.window = 65535;
  std::vector<uint8_t> out(wire::ipv4_tcp_packet_size(0, 0));
  REQUIRE(wire::build_ipv4_tcp(out, fields, {}) == out.size());
  return out;
}

TcpSegmentView parse(const std::vector<uint8_t>& packet) {
  auto info = wire::check_ip_packet(packet);
  REQUIRE(info);
  auto tcp = wire::parse_tcp_segment(packet, *info);
  REQUIRE(tcp);
  return *tcp;
}

constexpr const char* kernel = "169.254.77.1";

struct TransparentFixture {
  uv_loop_t loop{};
  std::unique_ptr<Node> node;
  FakeLink* overlay = nullptr;
  FakeLink* device = nullptr;
  std::unique_ptr<TransparentGuard> guard;
  std::unique_ptr<TransparentListener> listener;
  std::vector<tcp_pcb*> accepted;

  TransparentFixture() {
    uv_loop_init(&loop);
    node = std::make_unique<Node>(&loop);
    auto first = std::make_unique<FakeLink>();
    overlay = first.get();
    InterfaceConfig config;
    config.address4 = ip("198.18.11.2");
    config.prefix4 = 24;
    REQUIRE(node->add_interface(std::move(first), config));
    auto second = std::make_unique<FakeLink>();
    device = second.get();
    InterfaceConfig transparent;
    transparent.address4 = ip(kernel);
    REQUIRE(node->add_interface(std::move(second), transparent));
    auto accepts = [](const IpAddress& destination, uint16_t port) {
      return port != 0 && destination.bytes[0] == 198 && destination.bytes[2] == 12;
    };
    netif* interface = node->lwip_interface(1);
    guard = std::make_unique<TransparentGuard>(interface, ip(kernel), accepts);
    node->add_input_filter(InputStage::defense, guard.get());
    auto made = TransparentListener::listen(interface, accepts, [this](tcp_pcb* pcb) {
      accepted.push_back(pcb);
      return true;
    });
    REQUIRE(made);
    listener = std::move(made.value());
  }
  ~TransparentFixture() {
    for (tcp_pcb* pcb : accepted) {
      tcp_arg(pcb, nullptr);
      tcp_abort(pcb);
    }
    listener.reset();
    node->remove_input_filter(guard.get());
    node->close();
    uv_run(&loop, UV_RUN_NOWAIT);
    node.reset();
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
  }
  void turn() { uv_run(&loop, UV_RUN_NOWAIT); }
};

}  // namespace

TEST_CASE("transparent: a SYN to any accepted address and port is answered as that destination") {
  TransparentFixture f;
  for (uint16_t port : {uint16_t{7000}, uint16_t{22}, uint16_t{5201}}) {
    f.device->sent.clear();
    f.device->inject(segment(kernel, 40000, "198.18.12.2", port, TcpSegmentView::SYN, 1000));
    f.turn();
    REQUIRE(f.device->sent.size() == 1);
    auto reply = parse(f.device->sent[0]);
    CHECK(reply.has(TcpSegmentView::SYN | TcpSegmentView::ACK));
    CHECK(reply.src_port == port);
    CHECK(reply.dst_port == 40000);
    CHECK(reply.ack == 1001);
    CHECK(std::equal(reply.src_address.begin(), reply.src_address.begin() + 4, v4("198.18.12.2").begin()));
    CHECK(f.overlay->sent.empty());
    // The handshake's ACK makes lwIP hand over the pcb, named as the kernel dialled it.
    f.device->inject(segment(kernel, 40000, "198.18.12.2", port, TcpSegmentView::ACK, 1001, reply.seq + 1));
    f.turn();
    REQUIRE(!f.accepted.empty());
    tcp_pcb* pcb = f.accepted.back();
    CHECK(from_lwip(pcb->local_ip) == ip("198.18.12.2"));
    CHECK(pcb->local_port == port);
    CHECK(from_lwip(pcb->remote_ip) == ip(kernel));
  }
  CHECK(f.listener->counters().accepted == 3);
  CHECK(f.guard->counters().refused == 0);
}

TEST_CASE("transparent: a destination outside the overlay gets RST, counted, and no pcb") {
  TransparentFixture f;
  f.device->inject(segment(kernel, 40001, "198.18.99.1", 80, TcpSegmentView::SYN, 5000));
  f.turn();
  REQUIRE(f.device->sent.size() == 1);
  auto reply = parse(f.device->sent[0]);
  CHECK(reply.has(TcpSegmentView::RST));
  CHECK(reply.ack == 5001);
  CHECK(f.guard->counters().refused == 1);
  CHECK(f.accepted.empty());
}

TEST_CASE("transparent: the same SYN from the overlay link reaches no transparent listener") {
  TransparentFixture f;
  f.overlay->inject(segment(kernel, 40002, "198.18.12.2", 7000, TcpSegmentView::SYN, 1));
  f.overlay->inject(segment("198.18.12.9", 40002, "198.18.12.2", 7000, TcpSegmentView::SYN, 1));
  f.turn();
  for (const auto& packet : f.overlay->sent) CHECK(!parse(packet).has(TcpSegmentView::SYN | TcpSegmentView::ACK));
  CHECK(f.device->sent.empty());
  CHECK(f.accepted.empty());
  CHECK(f.listener->counters().accepted == 0);
}

TEST_CASE("transparent: other sources and non-TCP packets on the device are dropped and counted") {
  TransparentFixture f;
  f.device->inject(segment("198.18.12.7", 40003, "198.18.12.2", 7000, TcpSegmentView::SYN, 1));
  // A UDP datagram (IPv4, protocol 17, checksum 0: none) to the same destination.
  std::vector<uint8_t> udp{0x45, 0,   0,  29, 0, 0,    0,    0, 64, 17, 0, 0, 169, 254, 77,
                           1,    198, 18, 12, 2, 0x9c, 0x40, 0, 9,  0,  9, 0, 0,   'x'};
  uint32_t sum = 0;
  for (size_t i = 0; i < 20; i += 2) sum += static_cast<uint32_t>(udp[i] << 8 | udp[i + 1]);
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  udp[10] = static_cast<uint8_t>(~sum >> 8);
  udp[11] = static_cast<uint8_t>(~sum);
  f.device->inject(udp);
  f.turn();
  CHECK(f.device->sent.empty());
  CHECK(f.guard->counters().foreign_source == 1);
  CHECK(f.guard->counters().not_tcp == 1);
  CHECK(f.accepted.empty());
}

TEST_CASE("classify_transparent_packet: the guard's decision") {
  auto accepts = [](const IpAddress& destination, uint16_t port) {
    return port == 7000 && destination == IpAddress::parse("198.18.12.2").value();
  };
  const IpAddress kernel_address = ip(kernel);
  auto verdict = [&](const std::vector<uint8_t>& packet) {
    auto info = wire::check_ip_packet(packet);
    REQUIRE(info);
    auto tcp = wire::parse_tcp_segment(packet, *info);
    return classify_transparent_packet(*info, tcp ? &*tcp : nullptr, kernel_address, accepts);
  };
  CHECK(verdict(segment(kernel, 1, "198.18.12.2", 7000, TcpSegmentView::SYN, 1)) == TransparentVerdict::pass);
  CHECK(verdict(segment(kernel, 1, "198.18.12.2", 7001, TcpSegmentView::SYN, 1)) == TransparentVerdict::refuse);
  CHECK(verdict(segment(kernel, 1, "198.18.13.2", 7000, TcpSegmentView::SYN, 1)) == TransparentVerdict::refuse);
  // Only a SYN is refused here: other segments of unknown flows are lwIP's to reset.
  CHECK(verdict(segment(kernel, 1, "198.18.13.2", 7000, TcpSegmentView::ACK, 1)) == TransparentVerdict::pass);
  CHECK(verdict(segment("198.18.12.2", 7000, "198.18.12.2", 7000, TcpSegmentView::SYN, 1)) ==
        TransparentVerdict::foreign_source);
}
