// SourceWhitelist (seed 004): outside whitelist mode every source passes; in it only the
// listed addresses (exact, IPv4 and IPv6 apart); an activation extends the mode and never
// shortens it; clear ends it; the list is bounded.
#include "stack/defense/source_whitelist.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

using namespace roam;
using defense::SourceWhitelist;

IpAddress ip(const char* text) {
  return *IpAddress::parse(text);
}

TEST_CASE("outside whitelist mode every source passes; in it only the listed ones") {
  SourceWhitelist list;
  const std::vector<IpAddress> clients = {ip("198.18.1.2"), ip("2001:db8:1::2")};
  CHECK(list.admits(ip("198.19.7.7"), 1000));
  CHECK(list.add(clients) == 2);
  CHECK(list.add(clients) == 0);  // already there
  CHECK(list.size() == 2);
  CHECK(list.admits(ip("198.19.7.7"), 1000));  // listed, but the mode is off
  list.activate(1000, 60'000);
  CHECK(list.active(1000));
  CHECK(list.admits(ip("198.18.1.2"), 2000));
  CHECK(list.admits(ip("2001:db8:1::2"), 2000));
  CHECK_FALSE(list.admits(ip("198.18.1.3"), 2000));     // the neighbour
  CHECK_FALSE(list.admits(ip("198.19.7.7"), 2000));     // a spoofed source
  CHECK_FALSE(list.admits(ip("2001:db8:1::3"), 2000));
  // An IPv4 address is not the IPv6 address whose first bytes it shares.
  CHECK_FALSE(list.admits(ip("::c612:102"), 2000));
  CHECK(list.admits(ip("198.19.7.7"), 61'000));  // the mode ended
  CHECK_FALSE(list.active(61'000));
}

TEST_CASE("an activation extends the mode, never shortens it; clear ends it") {
  SourceWhitelist list;
  list.activate(0, 60'000);
  list.activate(10'000, 5'000);  // a shorter hold later: the longer deadline stays
  CHECK(list.active_until_ms() == 60'000);
  list.activate(30'000, 60'000);
  CHECK(list.active_until_ms() == 90'000);
  CHECK(list.activations() == 3);
  const std::vector<IpAddress> one = {ip("198.18.1.2")};
  list.add(one);
  list.clear();
  CHECK_FALSE(list.active(30'000));
  CHECK(list.size() == 0);
}

TEST_CASE("the list is bounded") {
  SourceWhitelist list(2);
  const std::vector<IpAddress> three = {ip("198.18.1.2"), ip("198.18.1.3"), ip("198.18.1.4")};
  CHECK(list.add(three) == 2);
  CHECK(list.size() == 2);
  CHECK(list.refused() == 1);
}

}  // namespace
