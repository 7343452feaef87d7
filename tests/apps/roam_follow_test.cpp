// Where a dead pool member's connections resume (PROTOCOL.md 14.5, RoamFollow::takeover_target):
// the member active now, or the first other member of the schedule from now on when the
// dead one is active; nothing for a server outside the pool or without a schedule.
#include "apps/roam_follow.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

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

uint64_t registry_value(const CounterRegistry& registry, const std::string& name) {
  for (const auto& r : registry.readings())
    if (r.name == name) return r.value;
  return ~uint64_t{0};
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

// PROTOCOL.md 13.4: a client that was away longer than its grant (its key ran out, past
// E_t) waits for the new channel's update before it dials, as a client that knows no pool
// does, and dials as soon as that update (a newer key, hashing down to the old one) came.
TEST_CASE("roam follow: a client past E_t waits for the update that catches it up") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    CounterRegistry registry;
    RoamFollow follow(registry, &loop);
    const IpAddress member = *IpAddress::parse("198.18.1.2");
    const auto now = static_cast<int64_t>(unix_ms());
    RoamMemberConfig c;
    for (const char* a : {"198.18.1.2", "198.18.2.2"}) c.servers.push_back({*IpAddress::parse(a), 7000});
    c.unit_ms = 60'000;
    c.start_ms = now - 1000;
    c.grant_epochs = 1;
    crypto::ChainKey seed;
    for (size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<uint8_t>(0x50 + i);
    RoamMember pool(crypto::HashChain(seed, 1000), c);

    // An update heard two epochs ago (as the client saw it: the next boundary was then
    // 2 units before now): it granted K_2, so the schedule ended an epoch ago.
    auto old = pool.update_for_client(now, true);
    REQUIRE(old.has_value());
    old->issued_at_ms -= 1;
    old->position->until_reference_ms = -2 * 60'000;
    CHECK(follow.tracker().apply(*old, now) == RoamVerdict::applied);
    CHECK(follow.tracker().expired(now));
    CHECK_FALSE(follow.scheduled_now());

    bool dialed = false;
    follow.when_scheduled(member, true, [&] { dialed = true; });
    uv_run(&loop, UV_RUN_NOWAIT);
    CHECK_FALSE(dialed);  // it waits for the member's update

    auto fresh = pool.update_for_client(now + 1, false);
    REQUIRE(fresh.has_value());
    follow.on_update(member, *fresh);
    CHECK(follow.scheduled_now());
    uv_run(&loop, UV_RUN_DEFAULT);  // ends when no waiter is left
    CHECK(dialed);
    auto target = follow.dial_target(member, 7000);
    REQUIRE(target.has_value());
    CHECK(registry_value(registry, "roam_dials_redirected") == 1);

    follow.close();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

// ERROR 3 (PROTOCOL.md 13.4): a member that has no schedule to give is not waited for; the
// client counts it and its carriers dial as configured at once.
TEST_CASE("roam follow: a member without a schedule (ERROR 3) is not waited for") {
  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);
  {
    CounterRegistry registry;
    RoamFollow follow(registry, &loop);
    const IpAddress member = *IpAddress::parse("198.18.2.2");
    follow.on_unavailable(member, "roam pool: chain exhausted");
    bool dialed = false;
    follow.when_scheduled(member, true, [&] { dialed = true; });
    uv_run(&loop, UV_RUN_NOWAIT);  // a deferred dial runs at once; a waiting one would not
    CHECK(dialed);
    CHECK(registry_value(registry, "roam_updates_unavailable") == 1);
    CHECK_FALSE(follow.dial_target(member, 7000).has_value());
    follow.close();
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
}

TEST_CASE("roam follow: a takeover passes over the members to avoid, and finds nothing when all are") {
  CounterRegistry registry;
  RoamFollow follow(registry, nullptr);
  const auto now = static_cast<int64_t>(unix_ms());
  RoamMember pool = pool_member(now - 1000);
  auto update = pool.update_for_client(now, true);
  REQUIRE(update.has_value());
  follow.on_update(*IpAddress::parse("198.18.9.9"), *update);
  const auto& servers = pool.config().servers;
  auto window = pool.window_at(now);
  REQUIRE(window.has_value());
  const IpAddress active = servers[window->server].address;
  std::vector<IpAddress> standby;
  for (const auto& s : servers)
    if (!(s.address == active)) standby.push_back(s.address);
  REQUIRE(standby.size() == 2);

  // standby[0] died; the active member is avoided (the client left it, or it refused): the
  // first later epoch whose member is neither, which can only be standby[1].
  const IpAddress avoid[] = {active};
  auto target = follow.takeover_target(standby[0], avoid);
  REQUIRE(target.has_value());  // the schedule starts now (fixed seed): standby[1] comes within 64 epochs
  CHECK(target->next_epoch);
  CHECK(target->server.address == standby[1]);
  // Every other member avoided: no target.
  const IpAddress all[] = {active, standby[1]};
  CHECK_FALSE(follow.takeover_target(standby[0], all).has_value());
  // Nothing avoided: the active member, as before.
  auto plain = follow.takeover_target(standby[0]);
  REQUIRE(plain.has_value());
  CHECK(plain->server.address == active);
}
