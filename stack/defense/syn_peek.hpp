// peek_syn: whether a raw IP packet looks like a pure SYN (SYN set, ACK and RST clear) and,
// if so, its flow and ISN, from the headers alone (wire::describe_own_tcp_packet and
// parse_tcp_segment: bounds checked, checksums not summed). A prefetch hint only
// (SynDefense::prefetch_syns): nothing is decided on it; the packet still goes through
// check_ip_packet and the filters. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "stack/defense/syn_cookie.hpp"

namespace roam::defense {

struct SynPeek {
  CookieFlow flow;  // local = the packet's destination, as SynDefense keys its SYNs
  uint32_t isn = 0;
};

// nullopt: not IPv4 or IPv6 TCP, an IPv4 fragment, an IPv6 packet with extension headers,
// not a pure SYN, or too short for its headers.
std::optional<SynPeek> peek_syn(std::span<const uint8_t> packet);

}  // namespace roam::defense
