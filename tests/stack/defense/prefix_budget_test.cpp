// PrefixBudget (issue 13): a prefix gets its burst at once, then per_second; one prefix's
// flood leaves another's budget whole; /24 and /64 are the units; per_second 0 is no budget.
#include "stack/defense/prefix_budget.hpp"

#include <doctest/doctest.h>

namespace {

using namespace roam;
using defense::PrefixBudget;
using defense::PrefixBudgetConfig;
using defense::source_prefix;

defense::SourcePrefix prefix(const char* text) {
  return source_prefix(*IpAddress::parse(text));
}

size_t takes(PrefixBudget& budget, const defense::SourcePrefix& p, uint64_t now_ms, size_t tries) {
  size_t granted = 0;
  for (size_t i = 0; i < tries; ++i) granted += budget.take(p, now_ms) ? 1 : 0;
  return granted;
}

TEST_CASE("a prefix gets its burst, then per_second; another prefix keeps its own") {
  PrefixBudget budget(PrefixBudgetConfig{100, 200, 4096, 7});
  const auto flood = prefix("198.19.7.1");
  CHECK(takes(budget, flood, 1000, 1000) == 200);              // the burst, then nothing
  CHECK(takes(budget, prefix("198.19.7.200"), 1000, 5) == 0);  // the same /24
  CHECK(takes(budget, prefix("198.18.1.2"), 1000, 10) == 10);  // another /24: untouched
  CHECK(takes(budget, flood, 1100, 1000) == 10);               // 100 ms at 100/s
  CHECK(takes(budget, flood, 1105, 1000) == 0);                // half a token is none
  CHECK(takes(budget, flood, 1110, 1000) == 1);
  CHECK(takes(budget, flood, 60'000, 1000) == 200);  // refills up to the burst only
  CHECK(takes(budget, flood, 59'000, 1) == 0);       // time going back refills nothing
}

TEST_CASE("IPv6 prefixes are /64; v4 and v6 are apart") {
  PrefixBudget budget(PrefixBudgetConfig{1, 2, 4096, 7});
  CHECK(takes(budget, prefix("2001:db8:1:2::1"), 0, 5) == 2);
  CHECK(takes(budget, prefix("2001:db8:1:2:ffff::9"), 0, 5) == 0);
  CHECK(takes(budget, prefix("2001:db8:1:3::1"), 0, 5) == 2);
  CHECK(takes(budget, prefix("198.18.1.2"), 0, 5) == 2);
}

TEST_CASE("per_second 0 is no budget") {
  PrefixBudget budget(PrefixBudgetConfig{0, 0, 16, 7});
  CHECK_FALSE(budget.enabled());
  CHECK(takes(budget, prefix("198.19.7.1"), 0, 10'000) == 10'000);
}

TEST_CASE("a small table: prefixes that share a slot reset it, full; memory stays bounded") {
  PrefixBudget budget(PrefixBudgetConfig{1, 3, 1, 7});  // one slot for everyone
  const auto a = prefix("198.19.1.1");
  const auto b = prefix("198.19.2.1");
  CHECK(takes(budget, a, 0, 10) == 3);
  CHECK(takes(budget, b, 0, 10) == 3);  // b took the slot over, full
  CHECK(takes(budget, a, 0, 1) == 1);   // and a took it back
}

}  // namespace
