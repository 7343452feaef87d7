// `--segment-mac [on|off]`: bare means on (as before the value existed), an explicit on or
// off is consumed, and the next option is never taken for its value.
#include "apps/channel_cli.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

namespace {

using namespace roam;

// Parses every argument as a channel option; returns the options and how many were consumed.
ChannelOptions parse(std::vector<std::string> args, bool initial, int& consumed) {
  std::vector<char*> argv;
  std::string program = "test";
  argv.push_back(program.data());
  for (auto& a : args) argv.push_back(a.data());
  ChannelOptions options;
  options.segment_mac = initial;
  int argc = static_cast<int>(argv.size());
  consumed = 0;
  for (int i = 1; i < argc; ++i) {
    REQUIRE(parse_channel_option(argc, argv.data(), i, options, true));
    ++consumed;
  }
  return options;
}

TEST_CASE("--segment-mac: bare is on, on|off is taken as its value, other options are not") {
  int n = 0;
  CHECK(parse({"--segment-mac"}, false, n).segment_mac);
  CHECK(parse({"--segment-mac", "on"}, false, n).segment_mac);
  CHECK(n == 1);
  CHECK_FALSE(parse({"--segment-mac", "off"}, true, n).segment_mac);
  CHECK(n == 1);
  auto options = parse({"--segment-mac", "--host-id", "c1"}, false, n);
  CHECK(options.segment_mac);
  CHECK(options.host_id == "c1");
  CHECK(n == 2);
}

}  // namespace
