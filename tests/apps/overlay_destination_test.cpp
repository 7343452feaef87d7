// Tests for apps/overlay_destination: which destinations roam-client carries (-D and
// --transparent): inside a --route prefix on a udp link, any address of a family the node
// has on a tun link, and never loopback, multicast, broadcast or unspecified addresses.
#include "apps/overlay_destination.hpp"

#include <doctest/doctest.h>

namespace {

roam::IpAddress ip(const char* text) {
  auto address = roam::IpAddress::parse(text);
  REQUIRE(address);
  return *address;
}

}  // namespace

TEST_CASE("overlay_carries: udp link routes") {
  roam::OverlayScope scope;
  scope.routes = {*roam::IpPrefix::parse("198.18.12.0/24"), *roam::IpPrefix::parse("2001:db8:12::/48")};
  scope.has_ipv4 = true;
  CHECK(roam::overlay_carries(scope, ip("198.18.12.2")));
  CHECK(roam::overlay_carries(scope, ip("2001:db8:12::2")));
  CHECK_FALSE(roam::overlay_carries(scope, ip("198.18.13.2")));
  CHECK_FALSE(roam::overlay_carries(scope, ip("198.18.99.1")));
  CHECK_FALSE(roam::overlay_carries(scope, ip("2001:db8:13::2")));
}

TEST_CASE("overlay_carries: a tun link carries any unicast address of the node's families") {
  roam::OverlayScope scope;
  scope.tun_link = true;
  scope.has_ipv4 = true;
  CHECK(roam::overlay_carries(scope, ip("203.0.113.9")));
  CHECK_FALSE(roam::overlay_carries(scope, ip("2001:db8::1")));
  scope.has_ipv6 = true;
  CHECK(roam::overlay_carries(scope, ip("2001:db8::1")));
}

TEST_CASE("overlay_carries: never loopback, multicast, broadcast or unspecified") {
  roam::OverlayScope scope;
  scope.routes = {*roam::IpPrefix::parse("0.0.0.0/0"), *roam::IpPrefix::parse("::/0")};
  scope.has_ipv4 = scope.has_ipv6 = true;
  for (const char* text : {"127.0.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "ff02::1"})
    CHECK_MESSAGE(!roam::overlay_carries(scope, ip(text)), text);
  scope.tun_link = true;
  for (const char* text : {"127.0.0.1", "0.0.0.0", "224.0.0.1", "::1", "ff02::1"})
    CHECK_MESSAGE(!roam::overlay_carries(scope, ip(text)), text);
}
