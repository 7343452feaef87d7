// The client's roaming tracker against a pool member's own schedule: a first update
// gives the schedule up to E_t, which agrees with the pool's; replayed, stale, forged,
// too-far and inconsistent updates are refused, counted, and change nothing; a client
// that missed updates catches up with a newer key.
#include "stack/control/roam_tracker.hpp"

#include <doctest/doctest.h>

#include "stack/control/roam_member.hpp"

namespace {

using namespace roam::control;
using roam::IpAddress;
using roam::crypto::ChainKey;
using roam::crypto::HashChain;

constexpr int64_t start = 1767225600000;
constexpr uint64_t n = 3000;

ChainKey seed_key() {
  ChainKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0xA0 + i);
  return k;
}

RoamMemberConfig pool_config(uint32_t self) {
  RoamMemberConfig c;
  for (const char* a : {"198.18.1.2", "198.18.2.2", "198.18.3.2"}) c.servers.push_back({*IpAddress::parse(a), 7000});
  c.self = self;
  c.unit_ms = 100;
  c.m = 2;
  c.start_ms = start;
  c.delta_ms = 10;
  c.gamma_ms = 20;
  c.grant_epochs = 50;
  return c;
}

RoamMember member(uint32_t self = 0) { return RoamMember(HashChain(seed_key(), n), pool_config(self)); }

// Where the client's clock says the pool is, and which server, at several instants.
void check_agrees(RoamTracker& tracker, RoamMember& pool, int64_t from, int64_t to) {
  for (int64_t t = from; t < to; t += 37) {
    auto mine = tracker.window_at(t);
    auto theirs = pool.window_at(t);
    REQUIRE(mine.has_value());
    REQUIRE(theirs.has_value());
    CHECK(*mine == *theirs);
    CHECK(tracker.active_server(t)->address == pool.config().servers[theirs->server].address);
  }
}

}  // namespace

TEST_CASE("roam tracker: the first update gives the pool's schedule up to E_t and nothing beyond") {
  RoamMember pool = member();
  RoamTracker tracker;
  int64_t now = start + 12345;
  auto update = pool.update_for_client(now, true);
  REQUIRE(update.has_value());
  CHECK(tracker.apply(*update, now) == RoamVerdict::applied);
  CHECK(tracker.counters().applied == 1);
  uint64_t t = *tracker.granted_until();
  CHECK(t == pool.window_at(now)->epoch + 50);
  check_agrees(tracker, pool, now, now + 2000);
  CHECK_FALSE(tracker.expired(now));
  // Past E_t the client knows nothing and says so.
  RoamMember probe = member();
  int64_t after = now;
  while (probe.window_at(after)->epoch <= t) after += 50;
  CHECK_FALSE(tracker.window_at(after).has_value());
  CHECK(tracker.expired(after));
}

TEST_CASE("roam tracker: a client that missed updates catches up with a newer key") {
  RoamMember pool = member();
  RoamTracker tracker;
  int64_t now = start + 1000;
  REQUIRE(tracker.apply(*pool.update_for_client(now, true), now) == RoamVerdict::applied);
  uint64_t first_t = *tracker.granted_until();
  // Many epochs later (hundreds of updates missed), a new update verifies by hashing.
  int64_t later = start + 40000;
  auto update = pool.update_for_client(later, false);
  CHECK(update->key->index > first_t + 100);
  CHECK(tracker.apply(*update, later) == RoamVerdict::applied);
  CHECK(tracker.counters().keys_extended == 1);
  check_agrees(tracker, pool, later, later + 3000);
}

TEST_CASE("roam tracker: replayed, stale, forged, too-far and inconsistent updates change nothing") {
  RoamMember pool = member();
  RoamTracker tracker(std::nullopt, RoamTrackerLimits{60'000, 500, 1 << 20, 64});
  int64_t now = start + 5000;
  auto first = *pool.update_for_client(now, true);
  REQUIRE(tracker.apply(first, now) == RoamVerdict::applied);
  auto granted = *tracker.granted_until();
  auto window = *tracker.window_at(now + 10);

  auto unchanged = [&] {
    CHECK(*tracker.granted_until() == granted);
    CHECK(*tracker.window_at(now + 10) == window);
  };
  // The same message again, and an older one.
  CHECK(tracker.apply(first, now + 1) == RoamVerdict::replayed);
  auto older = first;
  older.issued_at_ms -= 1;
  CHECK(tracker.apply(older, now + 1) == RoamVerdict::replayed);
  unchanged();
  // Issued too long ago, or in the future, by the client's clock.
  auto next = *pool.update_for_client(now + 100, false);
  CHECK(tracker.apply(next, now + 100 + 60'001) == RoamVerdict::stale);
  CHECK(tracker.apply(next, now + 100 - 60'001) == RoamVerdict::stale);
  unchanged();
  // A key below the one held; a current epoch below the one known.
  auto low_key = next;
  low_key.key = RoamKeyItem{static_cast<uint32_t>(granted - 1), HashChain(seed_key(), n).key(granted - 1)};
  low_key.position.reset();
  CHECK(tracker.apply(low_key, now + 100) == RoamVerdict::stale);
  auto low_epoch = next;
  low_epoch.position->current = first.position->current - 1;
  CHECK(tracker.apply(low_epoch, now + 100) == RoamVerdict::stale);
  unchanged();
  // Forged: a flipped bit, a key from another chain, a real key with a wrong index.
  auto flipped = next;
  flipped.key->key[5] ^= 1;
  CHECK(tracker.apply(flipped, now + 100) == RoamVerdict::forged);
  auto other = next;
  other.key->key = HashChain::generate(n).key(other.key->index);
  CHECK(tracker.apply(other, now + 100) == RoamVerdict::forged);
  auto shifted = next;
  shifted.key->index += 1;
  CHECK(tracker.apply(shifted, now + 100) == RoamVerdict::forged);
  // Too far above the held key (limit 500 steps): refused without hashing it all.
  auto far = next;
  far.key = RoamKeyItem{static_cast<uint32_t>(granted + 501), HashChain(seed_key(), n).key(granted + 501)};
  CHECK(tracker.apply(far, now + 100) == RoamVerdict::too_far);
  unchanged();
  // Inconsistent: j or r above t, j too far from r, an m change not after r.
  auto above = next;
  above.position->reference = above.key->index + 1;
  CHECK(tracker.apply(above, now + 100) == RoamVerdict::inconsistent);
  auto gap = next;
  gap.position->reference = gap.position->current + 65;
  gap.key = RoamKeyItem{gap.position->current + 70, HashChain(seed_key(), n).key(gap.position->current + 70)};
  CHECK(tracker.apply(gap, now + 100) == RoamVerdict::inconsistent);
  auto bits = next;
  bits.bits = RoamBitsItem{1, next.position->current};
  CHECK(tracker.apply(bits, now + 100) == RoamVerdict::inconsistent);
  unchanged();
  const auto& c = tracker.counters();
  CHECK(c.replayed == 2);
  CHECK(c.stale == 4);
  CHECK(c.forged == 3);
  CHECK(c.too_far == 1);
  CHECK(c.inconsistent == 3);
  CHECK(c.applied == 1);
  // The genuine next update still applies afterwards.
  CHECK(tracker.apply(next, now + 100) == RoamVerdict::applied);
}

TEST_CASE("roam tracker: configured trust refuses a first key from another chain; a position needs a pool") {
  RoamMember pool = member();
  HashChain chain(seed_key(), n);
  RoamTracker trusting(TrustedChainKey{0, chain.key(0)});
  int64_t now = start + 777;
  auto update = *pool.update_for_client(now, true);
  auto other = update;
  other.key->key = HashChain::generate(n).key(other.key->index);
  CHECK(trusting.apply(other, now) == RoamVerdict::forged);
  CHECK(trusting.apply(update, now) == RoamVerdict::applied);
  RoamTracker no_pool;
  auto without = *pool.update_for_client(now, false);
  CHECK(no_pool.apply(without, now) == RoamVerdict::inconsistent);
  CHECK_FALSE(no_pool.window_at(now).has_value());
}

TEST_CASE("roam tracker: an m change from epoch l is followed like the pool's own") {
  RoamMember pool = member();
  RoamTracker tracker;
  int64_t now = start + 2000;
  auto update = *pool.update_for_client(now, true);
  REQUIRE(tracker.apply(update, now) == RoamVerdict::applied);
  auto change = *pool.update_for_client(now + 1, false);
  uint32_t l = change.position->current + 5;
  change.bits = RoamBitsItem{0, l};
  REQUIRE(tracker.apply(change, now + 1) == RoamVerdict::applied);
  // From epoch l on every epoch lasts exactly the unit.
  auto w = *tracker.window_at(now + 1);
  int64_t at = w.start_ms;
  for (int i = 0; i < 20; ++i) {
    auto x = *tracker.window_at(at);
    if (x.epoch >= l) CHECK(x.end_ms - x.start_ms == 100);
    at = x.end_ms;
  }
}
