// SynRetxTable (issue 13, first-SYN drop): a SYN is new once and a retransmission after;
// records live one to two generations; false positives stay under the Bloom bound; a
// flow it cannot key changes nothing.
#include "stack/defense/syn_retx_table.hpp"

#include <doctest/doctest.h>

#include <random>

namespace {

using roam::defense::CookieFlow;
using roam::defense::SynRetxTable;
using roam::defense::SynRetxTableConfig;

constexpr std::array<uint8_t, 16> test_key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

CookieFlow flow_from(uint32_t remote, uint16_t remote_port) {
  CookieFlow flow;
  flow.version = 4;
  flow.local = {198, 18, 12, 2};
  flow.remote = {198, 19, static_cast<uint8_t>(remote >> 8), static_cast<uint8_t>(remote)};
  flow.local_port = 7000;
  flow.remote_port = remote_port;
  return flow;
}

}  // namespace

TEST_CASE("a SYN is new the first time and a retransmission after; another ISN, port or address is new") {
  SynRetxTable table(SynRetxTableConfig{1 << 16, 3000}, test_key);
  const CookieFlow flow = flow_from(7, 40000);
  CHECK_FALSE(table.seen_then_record(flow, 1000, 5));
  CHECK(table.seen_then_record(flow, 1000, 1005));
  CHECK(table.seen_then_record(flow, 1000, 3005));  // a third copy still finds it
  CHECK_FALSE(table.seen(flow, 1001, 3005));        // a new ISN: a new connection
  CHECK_FALSE(table.seen(flow_from(7, 40001), 1000, 3005));
  CHECK_FALSE(table.seen(flow_from(8, 40000), 1000, 3005));
  CookieFlow v6 = flow;
  v6.version = 6;
  CHECK_FALSE(table.seen(v6, 1000, 3005));
}

TEST_CASE("rotation: a record lives at least one generation and less than two") {
  SynRetxTable table(SynRetxTableConfig{1 << 16, 1000}, test_key);
  const CookieFlow early = flow_from(1, 1);
  const CookieFlow late = flow_from(2, 2);
  CHECK_FALSE(table.seen_then_record(early, 1, 0));  // the first generation starts at 0
  CHECK_FALSE(table.seen_then_record(late, 2, 999));
  CHECK(table.seen(early, 1, 1000));  // rotated: now in the older generation
  CHECK(table.seen(late, 2, 1999));   // one full generation after it was made
  CHECK_FALSE(table.seen(early, 1, 2000));
  CHECK_FALSE(table.seen(late, 2, 2000));
  // A record refreshed by its retransmission lives on in the current generation.
  CHECK_FALSE(table.seen_then_record(early, 1, 2100));
  CHECK(table.seen_then_record(early, 1, 3100));  // found in the older one, set again
  CHECK(table.seen(early, 1, 4500));
  // Time going back rotates nothing; a jump of two generations clears both.
  CHECK(table.seen(early, 1, 10));
  CHECK_FALSE(table.seen(early, 1, 9000));
  CHECK(table.current_records() == 0);
}

TEST_CASE("false positives: fresh SYNs taken for retransmissions stay under the two-bit Bloom bound") {
  // 6553 SYNs in 2^16 bits (n/m = 0.1, as 280k SYN/s for 12 s in the default 2^25):
  // (1 - e^-0.2)^2 = 3.3 % expected; every recorded SYN is found (no false negatives).
  SynRetxTable table(SynRetxTableConfig{1 << 16, 60'000}, test_key);
  std::mt19937 engine(13);
  auto random = [&engine] { return static_cast<uint32_t>(engine()); };
  std::vector<std::pair<CookieFlow, uint32_t>> recorded;
  for (int i = 0; i < 6553; ++i) {
    recorded.emplace_back(flow_from(random(), static_cast<uint16_t>(random())), random());
    table.seen_then_record(recorded.back().first, recorded.back().second, 0);
  }
  for (const auto& [flow, isn] : recorded) REQUIRE(table.seen(flow, isn, 1));
  int false_positives = 0;
  constexpr int fresh = 20'000;
  for (int i = 0; i < fresh; ++i)
    false_positives += table.seen(flow_from(random(), static_cast<uint16_t>(random())), random(), 1) ? 1 : 0;
  CHECK(false_positives > 0);                 // the bound is real, not an accident of the key
  CHECK(false_positives < fresh * 5 / 100);   // 3.3 % expected
  CHECK(table.memory_bytes() == 2 * (1 << 16) / 8);
}

TEST_CASE("a flow the table cannot key (IP version not 4 or 6) changes nothing") {
  SynRetxTable table(SynRetxTableConfig{1 << 16, 3000}, test_key);
  CookieFlow bad = flow_from(7, 40000);
  bad.version = 5;
  CHECK_FALSE(roam::defense::syn_record_hash(test_key, bad, 1));
  CHECK_FALSE(table.seen_then_record(bad, 1, 0));
  CHECK_FALSE(table.seen_then_record(bad, 1, 1));  // still not "seen": nothing was recorded
  CHECK(table.memory_bytes() == 0);               // not even allocated
  CHECK(table.current_records() == 0);
}

TEST_CASE("the record hash is keyed: another key, another hash; the same inputs, the same hash") {
  std::array<uint8_t, 16> other = test_key;
  other[0] ^= 1;
  const CookieFlow flow = flow_from(7, 40000);
  const auto a = roam::defense::syn_record_hash(test_key, flow, 1);
  REQUIRE(a);
  CHECK(a == roam::defense::syn_record_hash(test_key, flow, 1));
  CHECK(a != roam::defense::syn_record_hash(other, flow, 1));
  CHECK(a != roam::defense::syn_record_hash(test_key, flow, 2));
}

TEST_CASE("prefetch is only a hint: it allocates nothing, records nothing and answers nothing") {
  SynRetxTable table(SynRetxTableConfig{1 << 16, 3000}, test_key);
  const CookieFlow flow = flow_from(9, 40000);
  table.prefetch(flow, 77);  // before the first record: no table yet
  CHECK(table.memory_bytes() == 0);
  CHECK_FALSE(table.seen_then_record(flow_from(10, 40000), 1, 5));  // allocates
  const uint64_t records = table.current_records();
  table.prefetch(flow, 77);
  CookieFlow odd = flow;
  odd.version = 5;
  table.prefetch(odd, 77);  // a flow it cannot key: nothing
  CHECK(table.current_records() == records);
  CHECK_FALSE(table.seen(flow, 77, 6));
  CHECK_FALSE(table.seen_then_record(flow, 77, 7));  // still a first copy
}
