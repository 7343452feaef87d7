// Building the rtnetlink requests that give a TUN device its kernel-side address and
// routes (`ip addr add K/32 dev DEV`, `ip route add PREFIX dev DEV src K`), and reading the
// kernel's acknowledgements: what roam-client --transparent does to steer the chosen
// prefixes into its device. Pure: values in, bytes out (and back); no socket.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "base/ip_address.hpp"

namespace roam {

// RTM_NEWADDR (NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK): `address`/`prefix` on interface
// `interface` (IFA_LOCAL and IFA_ADDRESS both `address`: no peer).
std::vector<uint8_t> netlink_add_address_request(uint32_t sequence, uint32_t interface, const IpAddress& address,
                                                 uint8_t prefix);

// RTM_NEWROUTE (NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK) in the main table: `destination`
// through interface `interface` with scope link (no gateway on a point-to-point device),
// preferring `source` as the kernel's source address for it.
std::vector<uint8_t> netlink_add_route_request(uint32_t sequence, uint32_t interface, const IpPrefix& destination,
                                               const IpAddress& source);

// The kernel's answer to request `sequence` in `datagram`: 0 for success, a negative errno
// for a refusal, 1 when the datagram holds no answer to it (or is malformed).
int netlink_ack_status(std::span<const uint8_t> datagram, uint32_t sequence);

}  // namespace roam
