// Which destinations roam-client carries (docs/PROTOCOL.md 11, README "Transparent
// mode"): a unicast address inside an overlay route (--route, udp links), or on a tun link
// any unicast address of a family this node has an address of. Shared by the SOCKS5 port
// (-D) and the transparent device (--transparent). Pure.
#pragma once

#include <vector>

#include "base/ip_address.hpp"

namespace roam {

struct OverlayScope {
  std::vector<IpPrefix> routes;  // the --route prefixes
  bool tun_link = false;         // the node's link is a TUN device: routes are the kernel's
  bool has_ipv4 = false;         // the node has an address of the family
  bool has_ipv6 = false;
};

bool overlay_carries(const OverlayScope& scope, const IpAddress& address);

}  // namespace roam
