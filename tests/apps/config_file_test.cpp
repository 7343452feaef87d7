// Config files: a TOML file becomes the arguments the command line would carry, parsed by
// the same option parsers; errors name the file, line and key; the command line wins.
#include "apps/config_file.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "apps/argument_list.hpp"
#include "apps/channel_cli.hpp"
#include "apps/cli.hpp"

namespace {

using namespace roam;

OptionSpecs specs() {
  OptionSpecs out = {{"mode", "", OptionSpec::Kind::positional, false},
                     {"status-open", "--status-open", OptionSpec::Kind::flag, false}};
  add_specs(out, channel_option_specs(false));
  add_specs(out, link_option_specs());
  return out;
}

// The parse of a program: link and channel options through their real parsers, plus a
// flag and a mode. Errors come out as run_node_app prints them (with the origin).
struct Parsed {
  LinkOptions link;
  ChannelOptions channel;
  bool status_open = false;
  std::string mode;
};

Parsed parse(ArgumentList& list) {
  Parsed out;
  int argc = list.argc();
  char** argv = list.argv();
  try {
    for (int i = 1; list.at(i); ++i) {
      std::string arg = argv[i];
      if (parse_link_option(argc, argv, i, out.link)) continue;
      if (parse_channel_option(argc, argv, i, out.channel, false)) continue;
      if (arg == "--status-open")
        out.status_open = true;
      else if (arg[0] != '-')
        out.mode = arg;
      else
        throw ConfigError("unknown argument '" + arg + "'");
    }
  } catch (const ConfigError& e) {
    throw ConfigError(list.with_origin(e.what()));
  }
  return out;
}

Parsed parse_text(const std::string& text, std::vector<std::string> command_line = {}) {
  auto list = ArgumentList::merge("roam-server", config_file_arguments(text, "server.toml", specs()), command_line,
                                  specs());
  return parse(list);
}

std::string error_of(const std::string& text, std::vector<std::string> command_line = {}) {
  try {
    parse_text(text, std::move(command_line));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

const char* good = R"(# a server's config
link = "udp:127.0.0.1:7101"
addr = "198.18.12.2"
route = ["198.18.11.0/24=127.0.0.1:7100",
         "198.18.14.0/24=127.0.0.1:7104"]
mtu = 1400
dead-peer = 45
status-open = true
segment-mac = "on"
require-owner-proof = false
mode = "echo"
)";

TEST_CASE("config file: every kind of key becomes the option it names") {
  Parsed p = parse_text(good);
  CHECK(p.link.link == "udp:127.0.0.1:7101");
  CHECK(p.link.address == "198.18.12.2");
  REQUIRE(p.link.routes.size() == 2);
  CHECK(p.link.routes[1] == "198.18.14.0/24=127.0.0.1:7104");
  CHECK(p.link.mtu == 1400);
  CHECK(p.link.dead_peer.dead_after_ms == 45'000);
  CHECK(p.status_open);
  CHECK(p.channel.segment_mac);
  CHECK_FALSE(p.channel.limits.require_owner_proof);  // false: the option is left out
  CHECK(p.mode == "echo");
}

TEST_CASE("config file: an unknown key names the file and line, and nothing is parsed") {
  CHECK(error_of("addr = \"198.18.12.2\"\n\nlistn = 7000\n").rfind("server.toml:3: unknown key 'listn'", 0) == 0);
  CHECK(error_of("config = \"other.toml\"\n").rfind("server.toml:1: unknown key 'config'", 0) == 0);
  CHECK(error_of("[link]\naddr = \"x\"\n").rfind("server.toml:1: unknown key 'link'", 0) != 0);  // a table: bad type
}

TEST_CASE("config file: a value of the wrong type names file, line and key") {
  CHECK(error_of("mtu = 1.5\n") == "server.toml:1: key 'mtu': expected a string or an integer, got a float");
  CHECK(error_of("\nstatus-open = \"yes\"\n") ==
        "server.toml:2: key 'status-open': expected true or false, got a string");
  CHECK(error_of("addr = [\"198.18.12.2\"]\n") ==
        "server.toml:1: key 'addr': expected a string or an integer, got an array");
  CHECK(error_of("route = [\"198.18.11.0/24=127.0.0.1:7100\", true]\n").find("server.toml:1: key 'route'") == 0);
  CHECK(error_of("link = { udp = 1 }\n").rfind("server.toml:1: key 'link': expected", 0) == 0);
  CHECK(error_of("segment-mac = \"maybe\"\n").rfind("server.toml:1: key 'segment-mac'", 0) == 0);
}

TEST_CASE("config file: a bad value gets the option parser's own reason, placed in the file") {
  CHECK(error_of("addr = \"198.18.12.2\"\nmtu = 99999\n") == "server.toml:2: key 'mtu': --mtu out of range: 99999");
  CHECK(error_of("dead-peer = 2\n") ==
        "server.toml:1: key 'dead-peer': --dead-peer must be 0 (never) or 3 to 86400 seconds");
  CHECK(error_of("mtu = -5\n") == "server.toml:1: key 'mtu': bad --mtu: '-5'");
  CHECK(error_of("handover = \"sometimes\"\n") ==
        "server.toml:1: key 'handover': bad --handover 'sometimes': always or off");
}

TEST_CASE("config file: a duplicate key or bad TOML is refused with its line") {
  CHECK(error_of("mtu = 1400\naddr = \"x\"\nmtu = 1500\n").rfind("server.toml:3: ", 0) == 0);
  CHECK(error_of("mtu = 1400\nroute = [\n").rfind("server.toml:", 0) == 0);
  CHECK(error_of("addr = \"198.18.12.2\n").rfind("server.toml:1: ", 0) == 0);
}

TEST_CASE("config file: the command line overrides, a repeatable option's whole list") {
  Parsed p = parse_text(good, {"--mtu", "9000", "--route", "198.18.20.0/24=127.0.0.1:7200", "discard"});
  CHECK(p.link.mtu == 9000);
  REQUIRE(p.link.routes.size() == 1);
  CHECK(p.link.routes[0] == "198.18.20.0/24=127.0.0.1:7200");
  CHECK(p.mode == "discard");
  CHECK(p.link.address == "198.18.12.2");  // not given: the file's
  // A bad value in the file is never parsed when the command line replaces it.
  CHECK(error_of("mtu = 99999\n", {"--mtu", "1500"}) == "(no error)");
  // The command line's own errors carry no file position.
  CHECK(error_of(good, {"--mtu", "x"}) == "bad --mtu: 'x'");
  // --segment-mac with and without its on|off on the command line.
  CHECK_FALSE(parse_text(good, {"--segment-mac", "off", "echo"}).channel.segment_mac);
  CHECK(parse_text("segment-mac = false\n", {"--segment-mac", "echo"}).channel.segment_mac);
}

TEST_CASE("--config on the command line: dropped from the arguments; twice or without a value refused") {
  CHECK(ArgumentList::config_path({"--mtu", "1400", "--config", "a.toml"}) == "a.toml");
  CHECK(ArgumentList::config_path({"echo"}).empty());
  CHECK_THROWS_AS(ArgumentList::config_path({"--config"}), ConfigError);
  CHECK_THROWS_AS(ArgumentList::config_path({"--config", "a", "--config", "b"}), ConfigError);
  auto list = ArgumentList::merge("p", {}, {"--config", "a.toml", "echo"}, specs());
  CHECK(list.args() == std::vector<std::string>{"p", "echo"});
  CHECK_THROWS_AS(read_config_file("/nonexistent/roamstack.toml", specs()), ConfigError);
}

}  // namespace
