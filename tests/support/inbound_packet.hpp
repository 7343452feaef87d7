// InboundPacket for tests that feed an input filter directly, with the time they choose
// (the Node stamps the loop's time on what it receives; a state-machine test picks its
// own). Parsed the way the Node parses: check_ip_packet, then the TCP segment and its flow
// as seen from the receiving host. Owns the bytes the packet views.
#pragma once

#include <doctest/doctest.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "stack/flow_key.hpp"
#include "stack/node.hpp"
#include "stack/wire/handover_segment.hpp"
#include "stack/wire/ip_packet.hpp"
#include "stack/wire/tcp_header.hpp"

namespace roam::testing {

// A Node with no links: enough for filters that register on it and send nothing.
struct BareNode {
  uv_loop_t loop{};
  std::unique_ptr<Node> node;
  BareNode() {
    uv_loop_init(&loop);
    node = std::make_unique<Node>(&loop);
  }
  ~BareNode() {
    node->close();
    uv_run(&loop, UV_RUN_NOWAIT);
    node.reset();
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
  }
  BareNode(const BareNode&) = delete;
  BareNode& operator=(const BareNode&) = delete;
  // Runs what the filters deferred.
  void run_deferred() { uv_run(&loop, UV_RUN_NOWAIT); }
};

struct TestInbound {
  std::vector<uint8_t> bytes;
  InboundPacket packet;
};

inline std::unique_ptr<TestInbound> inbound_packet(std::vector<uint8_t> bytes, uint64_t now_ms) {
  auto out = std::make_unique<TestInbound>();
  out->bytes = std::move(bytes);
  auto info = wire::check_ip_packet(out->bytes);
  REQUIRE(info);
  out->packet.bytes = std::span<const uint8_t>(out->bytes).first(info->length);
  out->packet.info = *info;
  out->packet.interface = nullptr;
  out->packet.now_ms = now_ms;
  if (info->protocol == wire::ip_protocol_tcp) {
    auto segment = wire::parse_tcp_segment(out->packet.bytes, *info);
    REQUIRE(segment);
    auto flow = inbound_flow(out->packet.bytes);
    REQUIRE(flow);
    InboundTcp tcp;
    tcp.segment = *segment;
    tcp.flow = *flow;
    wire::HandoverOption option;
    tcp.handover_option = wire::find_handover_option(segment->options, option) != wire::MacOptionLookup::absent;
    out->packet.tcp = tcp;
  }
  return out;
}

// A bare ACK of `flow` as it arrives at this host (from flow.remote to flow.local).
inline std::vector<uint8_t> bare_ack_to(const FlowKey& flow) {
  wire::BareAck ack;
  ack.src = flow.remote;
  ack.dst = flow.local;
  ack.src_port = flow.remote_port;
  ack.dst_port = flow.local_port;
  std::vector<uint8_t> packet(wire::handover_packet_max_bytes);
  packet.resize(wire::build_bare_ack(packet, ack));
  REQUIRE(!packet.empty());
  return packet;
}

// A synthetic handover segment (SYN, or SYN-ACK with `syn_ack`) as bytes.
inline std::vector<uint8_t> handover_packet(const wire::HandoverSegment& segment) {
  std::vector<uint8_t> packet(wire::handover_packet_max_bytes);
  packet.resize(wire::build_handover_segment(packet, segment));
  REQUIRE(!packet.empty());
  return packet;
}

}  // namespace roam::testing
