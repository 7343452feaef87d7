// A pool member's decision: exactly one member active at each instant, the transitional
// interval lets the old and the new member accept around a boundary, the cached answer
// equals the uncached one, and drops are counted.
#include "stack/control/roam_member.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <stdexcept>

namespace {

using namespace roam::control;
using roam::IpAddress;
using roam::crypto::ChainKey;
using roam::crypto::HashChain;

constexpr int64_t start = 1767225600000;

ChainKey seed_key() {
  ChainKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0x30 + i);
  return k;
}

RoamMemberConfig config(uint32_t self, int64_t delta, int64_t gamma) {
  RoamMemberConfig c;
  for (const char* a : {"198.18.1.2", "198.18.2.2", "198.18.3.2", "198.18.4.2"})
    c.servers.push_back({*IpAddress::parse(a), 7000});
  c.self = self;
  c.unit_ms = 200;
  c.m = 1;
  c.start_ms = start;
  c.delta_ms = delta;
  c.gamma_ms = gamma;
  return c;
}

}  // namespace

TEST_CASE("roam member: exactly one active member at every instant; others drop and count") {
  std::vector<RoamMember> pool;
  for (uint32_t i = 0; i < 4; ++i) pool.emplace_back(HashChain(seed_key(), 1000), config(i, 0, 0));
  std::array<int, 4> active_samples{};
  for (int64_t t = start; t < start + 60000; t += 7) {
    int active = 0;
    int admitting = 0;
    for (uint32_t i = 0; i < 4; ++i) {
      if (pool[i].active(t)) {
        ++active;
        ++active_samples[i];
      }
      if (pool[i].admit(t)) ++admitting;
    }
    REQUIRE(active == 1);
    CHECK(admitting == 1);  // delta = gamma = 0: only the active one
  }
  for (int a : active_samples) CHECK(a > 1000);
  uint64_t dropped = 0;
  for (auto& m : pool) dropped += m.counters().dropped_inactive;
  CHECK(dropped == 3 * ((60000 + 6) / 7));
  CHECK(pool[0].counters().epoch_changes > 100);
}

TEST_CASE("roam member: the transitional interval, and the cached answer equals the schedule's") {
  RoamMember a(HashChain(seed_key(), 1000), config(0, 15, 25));
  roam::crypto::EpochRule rule;
  rule.unit_ms = 200;
  rule.changes.push_back({0, 1});
  roam::crypto::RoamSchedule reference(HashChain(seed_key(), 1000), rule, 4, 1, start);
  int overlap = 0;
  for (int64_t t = start - 100; t < start + 30000; t += 3) {
    bool expected = reference.accepts(0, t, 15, 25);
    REQUIRE(a.accepts(t) == expected);
    auto w = reference.window_at(t);
    bool is_active = w && w->server == 0;
    CHECK(a.active(t) == is_active);
    CHECK(a.window_at(t) == w);
    if (expected && !is_active) ++overlap;
  }
  CHECK(overlap > 0);  // the transitional interval happened
}

TEST_CASE("roam member: an update for a client, and bad configurations") {
  RoamMember a(HashChain(seed_key(), 1000), config(2, 10, 10));
  CHECK_FALSE(a.update_for_client(start - 1, true).has_value());
  auto u = a.update_for_client(start + 450, true);
  REQUIRE(u.has_value());
  CHECK(u->pool->servers.size() == 4);
  CHECK(u->position->reference == u->position->current + 1);
  CHECK(u->key->index == std::min<uint32_t>(u->position->current + 3600, 1000));  // t capped at n
  CHECK(a.describe(start + 450).find("roam epoch") == 0);
  CHECK_THROWS_AS(RoamMember(HashChain(seed_key(), 10), config(4, 0, 0)), std::invalid_argument);
  CHECK_THROWS_AS(RoamMember(HashChain(seed_key(), 10), config(0, 100, 100)), std::invalid_argument);
}
