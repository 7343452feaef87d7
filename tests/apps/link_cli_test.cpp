// The dead-peer options of roam-server and roam-client (apps/cli.*): the documented
// defaults (README "Dead peers", PROTOCOL 1.3), the values taken, and the bounds refused.
// tests/integration/dead_peer_test.py runs with short explicit bounds to stay fast; the
// defaults it no longer waits for are pinned here.
#include "apps/cli.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

using namespace roam;

// Parses every argument as a link option into `options`.
void parse(std::vector<std::string> args, LinkOptions& options) {
  std::vector<char*> argv;
  std::string program = "test";
  argv.push_back(program.data());
  for (auto& a : args) argv.push_back(a.data());
  int argc = static_cast<int>(argv.size());
  for (int i = 1; i < argc; ++i) REQUIRE(parse_link_option(argc, argv.data(), i, options));
}

TEST_CASE("link options: a peer is dead after 30 s of silence and an open fails after 10 s by default") {
  LinkOptions options;
  CHECK(options.dead_peer.dead_after_ms == 30'000);
  CHECK(options.dead_peer.connect_timeout_ms == 10'000);
  // Probes start after a third of the bound (README: "after 10 s of silence").
  CHECK(options.dead_peer.idle_before_probe_ms() == 10'000);
}

TEST_CASE("link options: --dead-peer and --connect-timeout take seconds; 0 is never") {
  LinkOptions options;
  parse({"--dead-peer", "6", "--connect-timeout", "3"}, options);
  CHECK(options.dead_peer.dead_after_ms == 6'000);
  CHECK(options.dead_peer.connect_timeout_ms == 3'000);
  parse({"--dead-peer", "0"}, options);
  CHECK(options.dead_peer.dead_after_ms == 0);
}

TEST_CASE("link options: a dead-peer bound under 3 s is refused") {
  LinkOptions options;
  std::vector<std::string> args = {"test", "--dead-peer", "2"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int i = 1;
  CHECK_THROWS_AS(parse_link_option(3, argv.data(), i, options), ConfigError);
  CHECK(options.dead_peer.dead_after_ms == 30'000);
}

}  // namespace
