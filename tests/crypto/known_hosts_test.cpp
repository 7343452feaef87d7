// The known-hosts store: trust on first use, pinned mode, key mismatches, pruning, and its
// text form (every malformed line refused with its line number).
#include "crypto/known_hosts.hpp"

#include <doctest/doctest.h>

namespace {

using namespace roam::crypto;

PublicKey key_of(uint8_t fill) {
  PublicKey k{};
  k.fill(fill);
  return k;
}

TEST_CASE("an unknown peer is learned on first use, then known, and a different key is refused") {
  KnownHosts store;
  CHECK(store.check("server-a", key_of(1), 100, TrustPolicy::trust_on_first_use) == TrustVerdict::learned);
  CHECK(store.check("server-a", key_of(1), 150, TrustPolicy::trust_on_first_use) == TrustVerdict::known);
  CHECK(store.hosts().at("server-a").first_seen == 100);
  CHECK(store.hosts().at("server-a").last_seen == 150);
  CHECK(store.check("server-a", key_of(2), 160, TrustPolicy::trust_on_first_use) == TrustVerdict::key_mismatch);
  CHECK(store.hosts().at("server-a").key == key_of(1));  // unchanged by the refused key
  CHECK(store.hosts().at("server-a").last_seen == 150);
  CHECK(trusted(TrustVerdict::learned));
  CHECK_FALSE(trusted(TrustVerdict::key_mismatch));
}

TEST_CASE("pinned mode refuses peers that are not listed and learns nothing") {
  KnownHosts store;
  CHECK(store.check("server-b", key_of(3), 100, TrustPolicy::pinned) == TrustVerdict::unknown);
  CHECK(store.hosts().empty());
  REQUIRE(store.pin("server-b", key_of(3), 100));
  CHECK(store.check("server-b", key_of(3), 120, TrustPolicy::pinned) == TrustVerdict::known);
  CHECK(store.check("server-b", key_of(4), 120, TrustPolicy::pinned) == TrustVerdict::key_mismatch);
}

TEST_CASE("peer ids outside the allowed alphabet are refused") {
  KnownHosts store;
  for (std::string id :
       {std::string(), std::string("a b"), std::string("a\nb"), std::string(65, 'x'), std::string("peer/1")})
    CHECK(store.check(id, key_of(1), 1, TrustPolicy::trust_on_first_use) == TrustVerdict::bad_peer_id);
  CHECK(store.hosts().empty());
  CHECK(valid_peer_id("198.18.12.2"));
  CHECK(valid_peer_id("2001:db8::1"));
  CHECK(valid_peer_id("pool-7_a"));
}

TEST_CASE("entries unused for longer than the limit are pruned") {
  KnownHosts store;
  store.check("old", key_of(1), 100, TrustPolicy::trust_on_first_use);
  store.check("recent", key_of(2), 900, TrustPolicy::trust_on_first_use);
  CHECK(store.prune(1000, 500) == 1);
  CHECK(store.hosts().count("old") == 0);
  CHECK(store.hosts().count("recent") == 1);
}

TEST_CASE("the text form round-trips") {
  KnownHosts store;
  store.check("server-a", key_of(1), 100, TrustPolicy::trust_on_first_use);
  store.check("2001:db8:12::2", key_of(9), 200, TrustPolicy::trust_on_first_use);
  auto parsed = KnownHosts::parse(store.format());
  REQUIRE(parsed);
  CHECK(parsed->format() == store.format());
  CHECK(parsed->hosts().at("2001:db8:12::2").key == key_of(9));
}

TEST_CASE("each malformed line is refused with its line number") {
  std::string key = to_base64(key_of(5));
  struct Case {
    std::string text;
    size_t line;
  } cases[] = {
      {"a " + key + " 1\n", 1},                       // three fields
      {"# comment\n\nbad/id " + key + " 1 2\n", 3},   // bad id
      {"a notakey 1 2\n", 1},                         // bad key
      {"a " + key + " x 2\n", 1},                     // bad time
      {"a " + key + " 5 4\n", 1},                     // last before first
      {"a " + key + " 1 2\na " + key + " 1 2\n", 2},  // duplicate
      {"a " + key + " 1 2 extra\n", 1},               // five fields
      {"a " + key + " 18446744073709551616 1\n", 1},  // u64 overflow
  };
  for (const auto& c : cases) {
    auto parsed = KnownHosts::parse(c.text);
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error().line == c.line);
    CHECK_FALSE(parsed.error().reason.empty());
  }
  CHECK(KnownHosts::parse("# only comments\n\n")->hosts().empty());
}

}  // namespace
