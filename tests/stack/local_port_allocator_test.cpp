// LocalPortAllocator: ports unique per destination, every port used once before any is
// shared, a full destination refused while others go on, released ports reused.
#include "stack/local_port_allocator.hpp"

#include <doctest/doctest.h>

#include <set>
#include <utility>
#include <vector>

namespace {

using roam::IpAddress;
using roam::LocalPortAllocator;

IpAddress host(int i) {
  return *IpAddress::parse("198.18.20." + std::to_string(i));
}

TEST_CASE("every port of the range is used once before any port is shared between destinations") {
  LocalPortAllocator ports(40000, 40099, 17);  // 100 ports
  std::set<uint16_t> seen;
  for (int i = 0; i < 100; ++i) {
    auto lease = ports.acquire(host(i % 7), 80);
    REQUIRE(lease);
    CHECK(lease->port >= 40000);
    CHECK(lease->port <= 40099);
    seen.insert(lease->port);
  }
  CHECK(seen.size() == 100);
  CHECK(ports.leases() == 100);
}

TEST_CASE("beyond the range, ports are shared between destinations but unique toward each") {
  LocalPortAllocator ports(40000, 40099, 3);
  std::set<std::pair<int, uint16_t>> tuples;  // (destination, port)
  for (int i = 0; i < 350; ++i) {             // 3.5 times the range over 4 destinations
    int d = i % 4;
    auto lease = ports.acquire(host(d), 443);
    REQUIRE(lease);
    CHECK(tuples.insert({d, lease->port}).second);
  }
  CHECK(ports.leases() == 350);
  CHECK(ports.destinations() == 4);
}

TEST_CASE("a destination with every port in use gets none, and the others go on") {
  LocalPortAllocator ports(40000, 40009, 0);  // 10 ports
  std::vector<LocalPortAllocator::Lease> leases;
  for (int i = 0; i < 10; ++i) {
    auto lease = ports.acquire(host(1), 80);
    REQUIRE(lease);
    leases.push_back(*lease);
  }
  CHECK_FALSE(ports.acquire(host(1), 80));
  CHECK(ports.acquire(host(1), 81));  // another port of the same host is another destination
  CHECK(ports.acquire(host(2), 80));
  // A released port goes back to its destination.
  ports.release(leases[3]);
  auto again = ports.acquire(host(1), 80);
  REQUIRE(again);
  CHECK(again->port == leases[3].port);
  CHECK_FALSE(ports.acquire(host(1), 80));
}

TEST_CASE("releasing everything forgets the destinations; a stale or foreign lease changes nothing") {
  LocalPortAllocator ports(40000, 40009, 5);
  auto a = ports.acquire(host(1), 80);
  auto b = ports.acquire(*IpAddress::parse("2001:db8::1"), 80);
  REQUIRE(a);
  REQUIRE(b);
  CHECK(ports.destinations() == 2);
  ports.release(*a);
  ports.release(*a);                   // twice: ignored
  ports.release({a->destination, 1});  // outside the range: ignored
  ports.release({999, a->port});       // no such destination: ignored
  CHECK(ports.leases() == 1);
  ports.release(*b);
  CHECK(ports.leases() == 0);
  CHECK(ports.destinations() == 0);
  // All ten free again for one destination.
  for (int i = 0; i < 10; ++i) CHECK(ports.acquire(host(3), 22));
}

}  // namespace
