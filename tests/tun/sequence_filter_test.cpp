// Tests for tun/sequence_filter (the kernel's copy of the Node's sequence-window check) on
// a real UdpLink on loopback: the kernel runs the program, so what arrives is what it
// accepted, and the socket's drop counter says how many it dropped. A marker datagram
// sent last proves that everything before it was judged (one socket keeps their order).
#include "tun/sequence_filter.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <unistd.h>
#include <uv.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/socket_address.hpp"
#include "support/loopback_udp_socket.hpp"
#include "stack/kernel_sequence_filter.hpp"
#include "tun/udp_link.hpp"

namespace {

using roam::SequenceFilterFlow;

using Socket = roam::testing::LoopbackUdpSocket;

constexpr uint32_t peer_address = 0xC6120B02;  // 198.18.11.2
constexpr uint32_t own_address = 0xC6120C02;   // 198.18.12.2

struct Segment {
  uint32_t source = peer_address;
  uint16_t source_port = 5000;
  uint32_t seq = 0;
  uint8_t flags = 0x10;  // ACK
  size_t option_bytes = 0;
  uint16_t fragment = 0;  // the IP header's flags and offset field
  uint8_t tag = 0;        // one payload byte, to tell the segments apart
};

void put32(std::vector<uint8_t>& out, size_t at, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[at + i] = static_cast<uint8_t>(value >> (24 - 8 * i));
}

// An IPv4 TCP segment to own_address:80 (checksums left zero: the kernel filter does not
// look at them).
std::vector<uint8_t> segment(const Segment& s) {
  const size_t tcp_bytes = 20 + s.option_bytes;
  std::vector<uint8_t> p(20 + tcp_bytes + 1, 0);
  p[0] = 0x45;
  p[2] = static_cast<uint8_t>(p.size() >> 8);
  p[3] = static_cast<uint8_t>(p.size());
  p[6] = static_cast<uint8_t>(s.fragment >> 8);
  p[7] = static_cast<uint8_t>(s.fragment);
  p[8] = 64;
  p[9] = 6;
  put32(p, 12, s.source);
  put32(p, 16, own_address);
  p[20] = static_cast<uint8_t>(s.source_port >> 8);
  p[21] = static_cast<uint8_t>(s.source_port);
  p[23] = 80;
  put32(p, 24, s.seq);
  p[32] = static_cast<uint8_t>((tcp_bytes / 4) << 4);
  p[33] = s.flags;
  for (size_t i = 0; i < s.option_bytes; ++i) p[40 + i] = 1;  // NOPs
  p.back() = s.tag;
  return p;
}

SequenceFilterFlow listed_flow(uint32_t first, uint32_t span) {
  SequenceFilterFlow flow;
  flow.source = peer_address;
  flow.destination = own_address;
  flow.source_port = 5000;
  flow.destination_port = 80;
  flow.first = first;
  flow.span = span;
  return flow;
}

// A UdpLink on loopback that takes datagrams from `peer`, and what it read.
struct LinkOnLoopback {
  uv_loop_t loop{};
  Socket peer;
  std::unique_ptr<roam::UdpLink> link;
  std::vector<std::vector<uint8_t>> received;

  LinkOnLoopback() {
    uv_loop_init(&loop);
    roam::UdpLinkConfig config;
    sockaddr_in bind{};
    bind.sin_family = AF_INET;
    bind.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::memcpy(&config.bind, &bind, sizeof bind);
    config.bind_len = sizeof bind;
    roam::UdpRoute route;
    route.prefix = *roam::IpPrefix::parse("198.18.11.0/24");
    route.endpoint = peer.address();
    route.endpoint_len = sizeof(sockaddr_in);
    config.routes.push_back(route);
    link = std::make_unique<roam::UdpLink>(&loop, config);
    REQUIRE(link->start([this](std::span<const roam::PacketView> batch) {
      for (auto packet : batch) received.emplace_back(packet.begin(), packet.end());
    }));
  }
  ~LinkOnLoopback() {
    link->close();
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }

  // Sends each segment, then a marker that every filter accepts; returns the tags read
  // before the marker.
  std::vector<uint8_t> send_and_collect(const std::vector<std::vector<uint8_t>>& packets) {
    received.clear();
    for (const auto& packet : packets) peer.send_to(link->local_address(), packet);
    std::vector<uint8_t> marker = {0xEE};  // not IP at all: the filter accepts it
    peer.send_to(link->local_address(), marker);
    while (received.empty() || received.back() != marker) uv_run(&loop, UV_RUN_ONCE);
    std::vector<uint8_t> tags;
    for (size_t i = 0; i + 1 < received.size(); ++i) tags.push_back(received[i].back());
    return tags;
  }
};

}  // namespace

TEST_CASE("sequence filter: the kernel drops a listed flow's far segments and nothing else") {
  LinkOnLoopback lab;
  const SequenceFilterFlow flows[] = {listed_flow(1000, 100)};
  REQUIRE(lab.link->set_sequence_filter(flows));
  lab.link->sample_kernel_counters();
  const uint64_t drops_before = lab.link->counters().rx_dropped_kernel;

  std::vector<std::vector<uint8_t>> packets = {
      segment({.seq = 1050, .tag = 1}),                                 // inside
      segment({.seq = 5000, .tag = 2}),                                 // far: dropped
      segment({.seq = 1000, .tag = 3}),                                 // first
      segment({.seq = 1100, .tag = 4}),                                 // first + span
      segment({.seq = 999, .tag = 5}),                                  // just before: dropped
      segment({.seq = 1101, .tag = 6}),                                 // just after: dropped
      segment({.seq = 5000, .flags = 0x02, .tag = 7}),                  // SYN: not judged
      segment({.source_port = 5001, .seq = 5000, .tag = 8}),            // another flow
      segment({.source = peer_address + 1, .seq = 5000, .tag = 9}),     // another peer
      segment({.seq = 5000, .option_bytes = 28, .tag = 10}),            // room for a handover option
      segment({.seq = 5000, .option_bytes = 24, .tag = 11}),            // less room: judged, dropped
      segment({.seq = 5000, .fragment = 0x2000, .tag = 12}),            // a first fragment (MF)
      segment({.seq = 5000, .flags = 0x04, .tag = 13}),                 // RST, far: dropped
  };
  std::vector<uint8_t> truncated = segment({.seq = 5000, .tag = 14});
  truncated.resize(30);  // no whole TCP header: left to userspace, which counts it
  truncated.back() = 14;
  packets.push_back(truncated);
  std::vector<uint8_t> not_ipv4 = segment({.seq = 5000, .tag = 15});
  not_ipv4[0] = 0x60;
  packets.push_back(not_ipv4);

  auto tags = lab.send_and_collect(packets);
  CHECK(tags == std::vector<uint8_t>{1, 3, 4, 7, 8, 9, 10, 12, 14, 15});
  lab.link->sample_kernel_counters();
  CHECK(lab.link->counters().rx_dropped_kernel - drops_before == 5);
  // The link counts only what it read.
  CHECK(lab.link->counters().rx_dropped == 0);
}

TEST_CASE("sequence filter: a range across 2^32 wraps; no flows detaches the filter") {
  LinkOnLoopback lab;
  const SequenceFilterFlow flows[] = {listed_flow(0xFFFFFF00u, 0x200)};
  REQUIRE(lab.link->set_sequence_filter(flows));
  auto tags = lab.send_and_collect({segment({.seq = 0xFFFFFFF0u, .tag = 1}), segment({.seq = 0x50, .tag = 2}),
                                    segment({.seq = 0x200, .tag = 3}), segment({.seq = 0xFFFFFE00u, .tag = 4})});
  CHECK(tags == std::vector<uint8_t>{1, 2});

  REQUIRE(lab.link->set_sequence_filter({}));
  tags = lab.send_and_collect({segment({.seq = 0x200, .tag = 5})});
  CHECK(tags == std::vector<uint8_t>{5});
}

TEST_CASE("sequence filter: many flows, the last one still judged; the program is capped") {
  LinkOnLoopback lab;
  std::vector<SequenceFilterFlow> flows;
  for (uint16_t port = 6000; port < 6063; ++port) {
    auto flow = listed_flow(0, 10);
    flow.source_port = port;
    flows.push_back(flow);
  }
  flows.push_back(listed_flow(1000, 100));  // the 64th: our flow
  REQUIRE(lab.link->set_sequence_filter(flows));
  auto tags = lab.send_and_collect({segment({.seq = 5000, .tag = 1}), segment({.seq = 1001, .tag = 2}),
                                    segment({.source_port = 6010, .seq = 5, .tag = 3}),
                                    segment({.source_port = 6010, .seq = 50, .tag = 4})});
  CHECK(tags == std::vector<uint8_t>{2, 3});

  std::vector<SequenceFilterFlow> too_many(roam::sequence_filter_max_flows + 10, listed_flow(0, 1));
  CHECK(roam::build_sequence_filter(too_many).size() == roam::build_sequence_filter(flows).size() +
                                                            11 * (roam::sequence_filter_max_flows - flows.size()));

  // The most flows a program takes, busiest first: the kernel takes it (~2,850
  // instructions) and the first flow is judged. Where optmem_max is too small for it the
  // link would install the first half, a quarter, ...: not exercised here (this kernel's
  // 128 KiB takes the whole program).
  std::vector<SequenceFilterFlow> busiest_first(roam::sequence_filter_max_flows, listed_flow(0, 10));
  for (size_t i = 0; i < busiest_first.size(); ++i) busiest_first[i].source_port = static_cast<uint16_t>(7000 + i);
  busiest_first[0] = listed_flow(1000, 100);
  REQUIRE(lab.link->set_sequence_filter(busiest_first));
  tags = lab.send_and_collect({segment({.seq = 5000, .tag = 1}), segment({.seq = 1001, .tag = 2})});
  CHECK(tags == std::vector<uint8_t>{2});
}


TEST_CASE("kernel sequence filter: rebuilt when a flow comes or goes or its range start moves past the slack") {
  const auto a = listed_flow(1000, 100);
  auto b = listed_flow(1000, 100);
  b.source_port = 5001;
  const SequenceFilterFlow installed[] = {a, b};
  CHECK_FALSE(roam::sequence_filter_stale(installed, installed));
  CHECK(roam::sequence_filter_stale(installed, std::span(installed).first(1)));
  CHECK(roam::sequence_filter_stale({}, installed));

  auto moved = b;
  moved.first = b.first + roam::sequence_filter_slack;  // as far as the slack reaches: kept
  const SequenceFilterFlow within[] = {a, moved};
  CHECK_FALSE(roam::sequence_filter_stale(installed, within));
  moved.first += 1;
  const SequenceFilterFlow beyond[] = {a, moved};
  CHECK(roam::sequence_filter_stale(installed, beyond));

  auto behind = b;
  behind.first = b.first - 1;  // another connection of the same 4-tuple, further back
  const SequenceFilterFlow replaced[] = {a, behind};
  CHECK(roam::sequence_filter_stale(installed, replaced));

  auto other = b;
  other.destination_port = 81;
  const SequenceFilterFlow swapped[] = {a, other};
  CHECK(roam::sequence_filter_stale(installed, swapped));
}
