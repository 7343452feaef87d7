// The roam pool file: every setting parses, defaults hold, and each bad line is refused
// with its line number.
#include "apps/roam_pool_file.hpp"

#include <doctest/doctest.h>

using roam::parse_roam_pool_file;

TEST_CASE("roam pool file: a full file parses; defaults for what it leaves out") {
  auto pool = parse_roam_pool_file(
      "# pool\n"
      "seed pool.chain\n"
      "length 4096   # epochs\n"
      "start 1767225600\n"
      "epoch 5\n"
      "m 3\n"
      "delta-ms 50\n"
      "gamma-ms 70\n"
      "grant-epochs 100\n"
      "member 198.18.12.2:7000\n"
      "member [2001:db8:13::2]:7001\n"
      "\n");
  REQUIRE(pool.has_value());
  CHECK(pool->seed_file == "pool.chain");
  CHECK(pool->length == 4096);
  CHECK(*pool->start_ms == 1767225600000);
  CHECK(*pool->unit_ms == 5000);
  CHECK(pool->m == 3);
  CHECK(pool->delta_ms == 50);
  CHECK(pool->gamma_ms == 70);
  CHECK(pool->grant_epochs == 100);
  REQUIRE(pool->members.size() == 2);
  CHECK(pool->members[0].address.to_string() == "198.18.12.2");
  CHECK(pool->members[0].port == 7000);
  CHECK(pool->members[1].address.to_string() == "2001:db8:13::2");
  CHECK(pool->members[1].port == 7001);

  auto minimal = parse_roam_pool_file("seed s\nstart 1\nmember 198.18.1.2:1\n");
  REQUIRE(minimal.has_value());
  CHECK(minimal->length == (uint64_t{1} << 20));
  CHECK_FALSE(minimal->unit_ms.has_value());
  CHECK(minimal->m == 0);
  CHECK(minimal->delta_ms == 100);
  CHECK(minimal->gamma_ms == 200);
}

TEST_CASE("roam pool file: bad lines and missing settings are refused, naming the line") {
  const char* base = "seed s\nstart 1\nmember 198.18.1.2:1\n";
  auto refused = [&](const std::string& extra, const std::string& want) {
    auto pool = parse_roam_pool_file(std::string(base) + extra);
    REQUIRE_FALSE(pool.has_value());
    CHECK(pool.error().find(want) != std::string::npos);
  };
  refused("length 0\n", "line 4: length");
  refused("length 4294967297\n", "line 4: length");
  refused("m 25\n", "line 4: m must");
  refused("epoch 0\n", "line 4: epoch");
  refused("member 2001:db8::1:7000\n", "line 4: bad member");
  refused("member 198.18.1.2:0\n", "line 4: bad member");
  refused("member 198.18.1.2\n", "line 4: bad member");
  refused("colour blue\n", "line 4: unknown setting");
  refused("seed a b\n", "line 4: expected");
  refused("start\n", "line 4: expected");
  refused("member 198.18.1.3:1 control\n", "line 4: expected 'member IP:PORT [control IP:PORT]'");
  refused("member 198.18.1.3:1 ctl 198.18.2.1:7100\n", "line 4: expected 'member");
  refused("member 198.18.1.3:1 control 198.18.2.1\n", "line 4: bad control");
  refused("member 198.18.1.3:1 control 198.18.2.1:7100 x\n", "line 4: expected");
  std::string many;
  for (int i = 0; i < 64; ++i) many += "member 198.18.2." + std::to_string(i + 1) + ":7000\n";
  refused(many, "line 67: more than 64");  // the 65th member
  CHECK(parse_roam_pool_file("start 1\nmember 198.18.1.2:1\n").error() == "no 'seed FILE'");
  CHECK(parse_roam_pool_file("seed s\nmember 198.18.1.2:1\n").error() == "no 'start UNIX_SECONDS'");
  CHECK(parse_roam_pool_file("seed s\nstart 1\n").error() == "no 'member IP:PORT'");
}

TEST_CASE("roam pool file: a member may name its control port; without one it is empty") {
  auto pool = parse_roam_pool_file(
      "seed s\nstart 1\n"
      "member 198.18.12.2:7000 control 198.18.2.1:7100\n"
      "member 198.18.13.2:7000\n"
      "member [2001:db8:14::2]:7000 control [2001:db8:4::1]:7100\n");
  REQUIRE(pool.has_value());
  REQUIRE(pool->members.size() == 3);
  REQUIRE(pool->member_controls.size() == 3);
  CHECK(pool->member_controls[0] == "198.18.2.1:7100");
  CHECK(pool->member_controls[1].empty());
  CHECK(pool->member_controls[2] == "[2001:db8:4::1]:7100");
}
