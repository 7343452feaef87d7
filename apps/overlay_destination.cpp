#include "apps/overlay_destination.hpp"

#include <algorithm>

namespace roam {

namespace {
bool unicast(const IpAddress& address) {
  if (address.version == 4) return address.bytes[0] != 0 && address.bytes[0] != 127 && address.bytes[0] < 224;
  static const IpAddress loopback = IpAddress::parse("::1").value();
  static const IpAddress unspecified = IpAddress::parse("::").value();
  return address.bytes[0] != 0xFF && !(address == loopback) && !(address == unspecified);
}
}  // namespace

bool overlay_carries(const OverlayScope& scope, const IpAddress& address) {
  if (!unicast(address)) return false;
  if (scope.tun_link) return address.version == 4 ? scope.has_ipv4 : scope.has_ipv6;
  return std::any_of(scope.routes.begin(), scope.routes.end(), [&](const IpPrefix& p) { return p.contains(address); });
}

}  // namespace roam
