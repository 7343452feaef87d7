// peek_syn: whether a raw IP packet looks like a pure SYN (SYN set, ACK and RST clear) and,
// if so, its flow and ISN, from the headers alone. A prefetch hint only (SynDefense::
// prefetch): no checksum is verified and nothing is decided on it; the packet still goes
// through check_ip_packet and the filters. Pure, bounds-checked on every field it reads.
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

// nullopt: not IPv4 or IPv6 TCP, an IPv4 fragment after the first, an IPv6 packet with
// extension headers, not a pure SYN, or too short for the headers it reads.
std::optional<SynPeek> peek_syn(std::span<const uint8_t> packet);

}  // namespace roam::defense
