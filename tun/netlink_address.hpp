// Parsing rtnetlink address messages (RTM_NEWADDR / RTM_DELADDR, as `ip monitor address`
// shows them): what roam-client --addr-from-device learns about its TUN device's
// addresses. Pure: bytes in, values out; no socket, no allocation beyond the result.
//
// Which address is the node's: a TUN device is point-to-point, and the operator gives it
// `ip addr add KERNEL peer NODE dev DEV`: IFA_LOCAL is the kernel's end, IFA_ADDRESS the
// peer's, that is the userspace stack's own address (the kernel then routes NODE/32 into
// the device by itself). An address without a peer (IFA_ADDRESS equal to IFA_LOCAL, or
// missing) is the kernel's alone and names no node address.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/ip_address.hpp"

namespace roam {

struct NetlinkAddress {
  bool added = true;        // RTM_NEWADDR (also every entry of a dump); false: RTM_DELADDR
  uint32_t interface = 0;   // ifindex
  uint8_t prefix = 0;
  IpAddress local;                 // IFA_LOCAL (or IFA_ADDRESS when there is no IFA_LOCAL)
  std::optional<IpAddress> peer;   // IFA_ADDRESS when it differs from IFA_LOCAL
};

struct NetlinkAddressBatch {
  std::vector<NetlinkAddress> addresses;  // IPv4 and IPv6 entries, in message order
  size_t malformed = 0;  // messages (or attributes) cut short or inconsistent: skipped
  size_t ignored = 0;    // other message types, other families
  bool done = false;     // NLMSG_DONE: a dump ended
  int error = 0;         // NLMSG_ERROR with a nonzero code (negative errno)
};

// Parses one datagram read from a NETLINK_ROUTE socket (one or more messages).
NetlinkAddressBatch parse_netlink_addresses(std::span<const uint8_t> datagram);

// Builds an RTM_GETADDR dump request for every address of every family.
std::vector<uint8_t> netlink_address_dump_request(uint32_t sequence);

}  // namespace roam
