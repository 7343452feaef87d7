// Where a dead pool member's connections resume (PROTOCOL.md 14.5, RoamFollow::takeover_target):
// the member active now, or the first other member of the schedule from now on when the
// dead one is active; nothing for a server outside the pool or without a schedule.
#include "apps/roam_follow.hpp"

#include <doctest/doctest.h>

#include "base/clock.hpp"
#include "stack/control/roam_member.hpp"

namespace {

using namespace roam;
using namespace roam::control;

RoamMember pool_member(int64_t start_ms) {
  RoamMemberConfig c;
  for (const char* a : {"198.18.1.2", "198.18.2.2", "198.18.3.2"}) c.servers.push_back({*IpAddress::parse(a), 7000});
  c.unit_ms = 60'000;  // one epoch covers the whole test: no boundary between two looks
  c.start_ms = start_ms;
  c.grant_epochs = 100;
  crypto::ChainKey seed;
  for (size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<uint8_t>(0x30 + i);
  return RoamMember(crypto::HashChain(seed, 1000), c);
}

}  // namespace

TEST_CASE("roam follow: a dead member's connections go to the active member, else the next other one") {
  CounterRegistry registry;
  RoamFollow follow(registry, nullptr);
  const IpAddress outsider = *IpAddress::parse("198.18.9.9");
  CHECK_FALSE(follow.takeover_target(*IpAddress::parse("198.18.1.2")).has_value());  // no schedule yet

  const auto now = static_cast<int64_t>(unix_ms());
  RoamMember pool = pool_member(now - 1000);
  auto update = pool.update_for_client(now, true);
  REQUIRE(update.has_value());
  follow.on_update(outsider, *update);
  REQUIRE(follow.tracker().pool().has_value());

  const auto& servers = pool.config().servers;
  auto window = pool.window_at(now);
  REQUIRE(window.has_value());
  const IpAddress active = servers[window->server].address;

  // The active member itself died: the first later epoch whose member is another.
  auto next = follow.takeover_target(active);
  REQUIRE(next.has_value());
  CHECK(next->next_epoch);
  int64_t at = window->end_ms;
  uint32_t expected = window->server;
  for (int i = 0; i < RoamFollow::takeover_epochs && expected == window->server; ++i) {
    auto later = pool.window_at(at);
    REQUIRE(later.has_value());
    expected = later->server;
    at = later->end_ms;
  }
  CHECK(next->server.address == servers[expected].address);

  // A standby member died: the active one takes over now.
  for (const auto& s : servers) {
    if (s.address == active) continue;
    auto target = follow.takeover_target(s.address);
    REQUIRE(target.has_value());
    CHECK_FALSE(target->next_epoch);
    CHECK(target->server.address == active);
  }
  // A server outside the pool: the schedule says nothing about it.
  CHECK_FALSE(follow.takeover_target(outsider).has_value());
}
