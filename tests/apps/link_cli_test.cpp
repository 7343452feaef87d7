// The dead-peer options of roam-server and roam-client (apps/cli.*): the documented
// defaults (README "Dead peers", PROTOCOL 1.3), the values taken, and the bounds refused.
// tests/integration/dead_peer_test.py runs with short explicit bounds to stay fast; the
// defaults it no longer waits for are pinned here. Also the shared on|off and port value
// parsers, with the one-line errors the programs print.
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

TEST_CASE("parse_on_off and parse_port take their values and refuse others in one line") {
  CHECK(parse_on_off("on", "--control-keep"));
  CHECK_FALSE(parse_on_off("off", "--control-keep"));
  CHECK_THROWS_WITH_AS(parse_on_off("maybe", "--control-keep"), "bad --control-keep 'maybe': expected on or off",
                       ConfigError);
  CHECK(parse_port("1", "--echo-port") == 1);
  CHECK(parse_port("65535", "--echo-port") == 65535);
  CHECK_THROWS_WITH_AS(parse_port("0", "--echo-port"), "--echo-port must be 1-65535", ConfigError);
  CHECK_THROWS_WITH_AS(parse_port("65536", "--echo-port"), "--echo-port out of range: 65536", ConfigError);
  CHECK_THROWS_WITH_AS(parse_port("7x", "--echo-port"), "bad --echo-port: '7x'", ConfigError);
}

}  // namespace
