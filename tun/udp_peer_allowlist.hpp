// UdpPeerAllowlist: which UDP sources a UdpLink takes datagrams from. Every datagram on the
// link is a whole IP packet handed to the stack, so a link that reads from anyone lets
// anyone who reaches its port inject packets with any inner source address. By default the
// link accepts exactly the endpoints its routes send to (the peers it already trusts with
// its own traffic); `--udp-allow` adds sources, `--udp-allow any` restores "from anywhere".
// Pure; any thread.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ip_address.hpp"

namespace roam {

// One allowed source: an address prefix and a port (0: any port).
struct UdpPeerRule {
  IpPrefix prefix;
  uint16_t port = 0;
};

// One --udp-allow value: "any" (any_peer), or "IP", "IP/LEN", "IP:PORT", "IP/LEN:PORT",
// "IPv6", "IPv6/LEN", "[IPv6]:PORT", "[IPv6/LEN]:PORT" (no port: any port). nullopt on bad
// text.
struct UdpAllowText {
  bool any_peer = false;
  UdpPeerRule rule;
};
std::optional<UdpAllowText> parse_udp_allow(std::string_view text);

// The source of a received datagram as an address and port; an IPv4-mapped IPv6 address
// (a dual-stack socket) becomes the IPv4 address it carries. nullopt for other families.
struct UdpSource {
  IpAddress address;
  uint16_t port = 0;
};
std::optional<UdpSource> udp_source_of(const sockaddr_storage& addr);

class UdpPeerAllowlist {
 public:
  // Accepts every source.
  void allow_any() { any_ = true; }
  void allow(UdpPeerRule rule) { rules_.push_back(rule); }
  // Exactly this endpoint (address and port).
  void allow_endpoint(const sockaddr_storage& endpoint);

  bool allows(const sockaddr_storage& source) const;
  bool allows_any() const { return any_; }
  // "any", or the rules as text ("127.0.0.1:7001, 198.18.0.0/15:*").
  std::string describe() const;

 private:
  bool any_ = false;
  std::vector<UdpPeerRule> rules_;
};

}  // namespace roam
