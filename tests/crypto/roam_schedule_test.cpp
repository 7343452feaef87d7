// The roaming schedule: epoch windows and active servers from the chain (PROTOCOL.md
// 13.3 vector), one active server at every instant, the transitional interval, m changes,
// and a client's partial chain agreeing with the pool's full one.
#include "crypto/roam_schedule.hpp"

#include <doctest/doctest.h>

#include <stdexcept>

#include "crypto/roam_keys.hpp"

namespace {

using namespace roam::crypto;

constexpr int64_t start = 1767225600000;  // 2026-01-01T00:00:00Z

ChainKey seed_key() {
  ChainKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i + 1);
  return k;
}

EpochRule rule_m(unsigned m, uint64_t unit = 1000) {
  EpochRule r;
  r.unit_ms = unit;
  if (m != 0) r.changes.push_back({0, m});
  return r;
}

}  // namespace

TEST_CASE("roam schedule: the published vector (seed 01..20, n = 8, unit 1 s, m = 3, 3 servers)") {
  RoamSchedule s(HashChain(seed_key(), 8), rule_m(3), 3, 1, start);
  const int64_t ends[8] = {7000, 9000, 17000, 20000, 24000, 25000, 28000, 30000};
  const uint32_t servers[8] = {2, 0, 2, 1, 1, 2, 2, 0};
  int64_t previous_end = start;
  for (uint64_t e = 1; e <= 8; ++e) {
    CAPTURE(e);
    EpochWindow w = s.window(e);
    CHECK(w.epoch == e);
    CHECK(w.start_ms == previous_end);
    CHECK(w.end_ms == start + ends[e - 1]);
    CHECK(w.server == servers[e - 1]);
    previous_end = w.end_ms;
  }
  CHECK_FALSE(s.window_at(start - 1).has_value());
  CHECK(s.window_at(start)->epoch == 1);
  CHECK(s.window_at(start + 6999)->epoch == 1);
  CHECK(s.window_at(start + 7000)->epoch == 2);
  CHECK(s.window_at(start + 29999)->epoch == 8);
  CHECK_FALSE(s.window_at(start + 30000).has_value());
}

TEST_CASE("roam schedule: window_at agrees with window for a long chain, out of order and repeated") {
  const uint64_t n = 5000;
  RoamSchedule s(HashChain(seed_key(), n), rule_m(4, 10), 4, 1, start);
  RoamSchedule fresh(HashChain(seed_key(), n), rule_m(4, 10), 4, 1, start);
  // Ask the end first (a server started long after the pool), then go back.
  EpochWindow last = s.window(n);
  CHECK(s.window_at(last.end_ms - 1) == last);
  for (uint64_t e : {uint64_t{1}, uint64_t{2}, uint64_t{70}, uint64_t{71}, uint64_t{72}, uint64_t{1234}, n - 1}) {
    EpochWindow w = fresh.window(e);
    CHECK(s.window(e) == w);
    CHECK(s.window_at(w.start_ms) == w);
    CHECK(s.window_at(w.end_ms - 1) == w);
    CHECK(w.end_ms - w.start_ms >= 10);
    CHECK(w.end_ms - w.start_ms <= 160);
  }
}

TEST_CASE("roam schedule: m = 0 gives fixed epochs; exactly one active server at every instant") {
  RoamSchedule s(HashChain(seed_key(), 300), rule_m(0, 500), 3, 1, start);
  CHECK(s.window(1).start_ms == start);
  CHECK(s.window(300).start_ms == start + 299 * 500);
  std::array<int, 3> active{};
  for (int64_t t = start; t < start + 300 * 500; t += 50) {
    auto w = s.window_at(t);
    REQUIRE(w.has_value());
    int accepting_outside_transition = 0;
    for (uint32_t member = 0; member < 3; ++member)
      if (s.accepts(member, t, 0, 0)) ++accepting_outside_transition;
    // With delta = gamma = 0 only the active server accepts.
    CHECK(accepting_outside_transition == 1);
    CHECK(s.accepts(w->server, t, 0, 0));
    ++active[w->server];
  }
  for (int a : active) CHECK(a > 500);  // every member takes a share (3000 samples)
}

TEST_CASE("roam schedule: the transitional interval: the new server from start - delta, the old until end + delta + gamma") {
  RoamSchedule s(HashChain(seed_key(), 8), rule_m(3), 3, 1, start);
  // Epoch 1 (server 2) ends at +7000; epoch 2 (server 0) runs to +9000; epoch 3 is server 2.
  const int64_t delta = 100;
  const int64_t gamma = 200;
  const int64_t boundary = start + 7000;
  CHECK_FALSE(s.accepts(0, boundary - delta - 1, delta, gamma));
  CHECK(s.accepts(0, boundary - delta, delta, gamma));  // the new one starts early
  CHECK(s.accepts(2, boundary - 1, delta, gamma));
  CHECK(s.accepts(2, boundary + delta + gamma - 1, delta, gamma));  // the old one ends late
  CHECK_FALSE(s.accepts(2, boundary + delta + gamma, delta, gamma));
  CHECK_FALSE(s.accepts(1, boundary, delta, gamma));  // never a bystander
  // Active stays single-valued across the boundary.
  CHECK(s.window_at(boundary - 1)->server == 2);
  CHECK(s.window_at(boundary)->server == 0);
  // Before the first epoch and after the last.
  CHECK(s.accepts(2, start - delta, delta, gamma));
  CHECK_FALSE(s.accepts(2, start - delta - 1, delta, gamma));
  CHECK(s.accepts(0, start + 30000 + delta + gamma - 1, delta, gamma));
  CHECK_FALSE(s.accepts(0, start + 30000 + delta + gamma, delta, gamma));
}

TEST_CASE("roam schedule: an m change from epoch l on changes lengths from l, not before") {
  EpochRule rule = rule_m(3);
  rule.set_from(5, 0);
  RoamSchedule s(HashChain(seed_key(), 8), rule, 3, 1, start);
  CHECK(s.window(4).end_ms == start + 20000);  // as in the vector
  CHECK(s.window(5).end_ms - s.window(5).start_ms == 1000);
  CHECK(s.window(8).end_ms == start + 24000);
  CHECK(rule.bits_at(4) == 3);
  CHECK(rule.bits_at(5) == 0);
  rule.set_from(2, 1);  // a later update supersedes what it covers
  CHECK(rule.changes.size() == 2);
  CHECK(rule.bits_at(1) == 3);
  CHECK(rule.bits_at(7) == 1);
}

TEST_CASE("roam schedule: a client holding K_t from epoch r agrees with the pool up to E_t and knows nothing beyond") {
  const uint64_t n = 2000;
  HashChain pool_chain(seed_key(), n);
  RoamSchedule pool(HashChain(seed_key(), n), rule_m(2, 100), 4, 1, start);
  const uint64_t r = 700;
  const uint64_t t = 900;
  const uint64_t j = 750;
  // The update says: epoch j starts at (pool's clock) start_j; the client rebuilds r's start.
  int64_t start_j = pool.window(j).start_ms;
  HashChain client_chain(pool_chain.key(t), t, r);
  int64_t start_r = RoamSchedule::start_of(client_chain, rule_m(2, 100), j, start_j, r);
  CHECK(start_r == pool.window(r).start_ms);
  CHECK(RoamSchedule::start_of(client_chain, rule_m(2, 100), r, start_r, j) == start_j);
  RoamSchedule client(std::move(client_chain), rule_m(2, 100), 4, r, start_r);
  for (uint64_t e = r; e <= t; e += 13) CHECK(client.window(e) == pool.window(e));
  CHECK(client.window(t) == pool.window(t));
  CHECK(client.last_epoch() == t);
  CHECK_FALSE(client.window_at(pool.window(t + 1).start_ms).has_value());
}

TEST_CASE("roam schedule: bad parameters are refused") {
  CHECK_THROWS_AS(RoamSchedule(HashChain(seed_key(), 8), rule_m(3), 0, 1, start), std::invalid_argument);
  CHECK_THROWS_AS(RoamSchedule(HashChain(seed_key(), 8), rule_m(3), 65, 1, start), std::invalid_argument);
  CHECK_THROWS_AS(RoamSchedule(HashChain(seed_key(), 8), rule_m(3), 3, 9, start), std::invalid_argument);
  CHECK_THROWS_AS(RoamSchedule(HashChain(seed_key(), 8), rule_m(25), 3, 1, start), std::invalid_argument);
  CHECK_THROWS_AS(RoamSchedule(HashChain(seed_key(), 8), rule_m(3, 0), 3, 1, start), std::invalid_argument);
}
