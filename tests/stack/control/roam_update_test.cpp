// ROAM_UPDATE (type 9): the PROTOCOL.md 13.4 examples decode and re-encode byte for
// byte (computed with Python's struct from the text), every item combination
// round-trips, and every truncation, unknown item bit and out-of-range field is refused.
#include "stack/control/roam_update.hpp"

#include <doctest/doctest.h>

#include <string>

#include "stack/control/messages.hpp"

namespace {

using namespace roam::control;
using roam::IpAddress;

std::vector<uint8_t> from_hex(const std::string& hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

roam::crypto::ChainKey key_01_20() {
  roam::crypto::ChainKey k;
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i + 1);
  return k;
}

const std::string periodic_hex =
    "090c0000019b76daaddc0000000100000002000000000000157c00000008"
    "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20";
const std::string pool_hex = "09010000019b76daaddc000003e8030304c61201021b5804c61202021b5804c61203021b58";

RoamPoolItem three_servers() {
  RoamPoolItem pool{1000, 3, {}};
  for (const char* a : {"198.18.1.2", "198.18.2.2", "198.18.3.2"}) pool.servers.push_back({*IpAddress::parse(a), 7000});
  return pool;
}

}  // namespace

TEST_CASE("ROAM_UPDATE: the periodic example (position and key) decodes and re-encodes") {
  RoamUpdate u;
  u.issued_at_ms = 1767225601500;
  u.position = RoamPositionItem{1, 2, 5500};
  u.key = RoamKeyItem{8, key_01_20()};
  auto bytes = from_hex(periodic_hex);
  CHECK(bytes.size() == 62);
  CHECK(encode_message(u) == bytes);
  auto decoded = decode_message(bytes);
  REQUIRE(decoded.has_value());
  CHECK(std::get<RoamUpdate>(*decoded) == u);
}

TEST_CASE("ROAM_UPDATE: the pool example decodes and re-encodes") {
  RoamUpdate u;
  u.issued_at_ms = 1767225601500;
  u.pool = three_servers();
  auto bytes = from_hex(pool_hex);
  CHECK(encode_message(u) == bytes);
  auto decoded = decode_message(bytes);
  REQUIRE(decoded.has_value());
  CHECK(std::get<RoamUpdate>(*decoded) == u);
}

TEST_CASE("ROAM_UPDATE: every item combination round-trips (IPv6 servers, a negative N_j)") {
  for (int items = 1; items < 16; ++items) {
    RoamUpdate u;
    u.issued_at_ms = 99;
    if (items & 1) {
      u.pool = three_servers();
      u.pool->servers.push_back({*IpAddress::parse("2001:db8::7"), 443});
    }
    if (items & 2) u.bits = RoamBitsItem{24, 70000};
    if (items & 4) u.position = RoamPositionItem{10, 9, -1500};
    if (items & 8) u.key = RoamKeyItem{0xFFFFFFFF, key_01_20()};
    auto bytes = encode_message(u);
    auto decoded = decode_message(bytes);
    REQUIRE(decoded.has_value());
    CHECK(std::get<RoamUpdate>(*decoded) == u);
    // Every truncation is refused, and so is a trailing byte.
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      auto r = decode_message(std::span<const uint8_t>(bytes.data(), cut));
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error() == MessageError::truncated);
    }
    bytes.push_back(0);
    CHECK(decode_message(bytes).error() == MessageError::trailing_bytes);
  }
}

TEST_CASE("ROAM_UPDATE: no item, unknown item bits and out-of-range fields are refused") {
  auto bad = [](std::vector<uint8_t> bytes) {
    auto r = decode_message(bytes);
    return !r.has_value() && r.error() == MessageError::bad_field;
  };
  auto periodic = from_hex(periodic_hex);
  auto none = periodic;
  none[1] = 0;
  CHECK(bad(none));
  auto unknown = periodic;
  unknown[1] = 0x1c;
  CHECK(bad(unknown));
  auto pool = from_hex(pool_hex);
  auto zero_unit = pool;
  zero_unit[10] = zero_unit[11] = zero_unit[12] = zero_unit[13] = 0;
  CHECK(bad(zero_unit));
  auto big_m = pool;
  big_m[14] = 25;
  CHECK(bad(big_m));
  auto no_servers = pool;
  no_servers[15] = 0;
  no_servers.resize(16);
  CHECK(bad(no_servers));
  auto many = pool;
  many[15] = 65;
  CHECK(bad(many));
  auto version = pool;
  version[16] = 5;
  CHECK(bad(version));
  RoamUpdate bits;
  bits.bits = RoamBitsItem{3, 9};
  auto bits_bytes = encode_message(bits);
  bits_bytes[10] = 25;
  CHECK(bad(bits_bytes));
}
