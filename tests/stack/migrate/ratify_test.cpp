// RATIFY (seed 004's ratify notification, docs/PROTOCOL.md 4.6): the payload round-trips,
// decodes from the documented bytes, refuses every truncation, a trailing byte and each bad
// field; the filter takes a ratify only from a pool member, fresh (sequence above the
// sender's last, issued within the age limit) and naming usable addresses, and a refusal
// changes nothing.
#include "stack/migrate/ratify.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

using namespace roam;
using migrate::Ratify;
using migrate::RatifyError;
using migrate::RatifyFilter;
using migrate::RatifyVerdict;

const uint64_t now = 1'800'000'000'000;

Ratify sample() {
  Ratify r;
  r.sequence = 0x0000018f00000400ull;
  r.issued_at_ms = 1'700'000'000'000ull;
  r.hold_s = 60;
  r.addresses = {*IpAddress::parse("198.18.1.2"), *IpAddress::parse("2001:db8:1::2")};
  return r;
}

crypto::PublicKey key(uint8_t fill) {
  crypto::PublicKey k{};
  k.fill(fill);
  return k;
}

TEST_CASE("a ratify round-trips and decodes from the documented bytes") {
  Ratify r = sample();
  auto bytes = migrate::encode_ratify(r);
  const std::vector<uint8_t> documented = {
      0x01,                                            // version
      0x00, 0x00, 0x01, 0x8f, 0x00, 0x00, 0x04, 0x00,  // sequence
      0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68, 0x00,  // issued_at_ms 1700000000000
      0x00, 0x00, 0x00, 0x3c,                          // hold_s 60
      0x00, 0x02,                                      // count
      0x04, 0xc6, 0x12, 0x01, 0x02,                    // 198.18.1.2
      0x06, 0x20, 0x01, 0x0d, 0xb8, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02};
  CHECK(bytes == documented);
  auto decoded = migrate::decode_ratify(documented);
  REQUIRE(decoded);
  CHECK(*decoded == r);
  Ratify empty = r;
  empty.addresses.clear();
  auto back = migrate::decode_ratify(migrate::encode_ratify(empty));
  REQUIRE(back);
  CHECK(*back == empty);
}

TEST_CASE("every truncation, a trailing byte and each bad field are refused") {
  auto bytes = migrate::encode_ratify(sample());
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto decoded = migrate::decode_ratify(std::span(bytes).first(n));
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error() == RatifyError::truncated);
  }
  auto longer = bytes;
  longer.push_back(0);
  REQUIRE_FALSE(migrate::decode_ratify(longer));
  CHECK(migrate::decode_ratify(longer).error() == RatifyError::trailing_bytes);
  auto with = [&](size_t offset, uint8_t value) {
    auto copy = bytes;
    copy[offset] = value;
    return migrate::decode_ratify(copy);
  };
  CHECK(with(0, 2).error() == RatifyError::unknown_version);
  CHECK(with(0, 0).error() == RatifyError::unknown_version);
  CHECK(with(20, 0).error() == RatifyError::bad_field);  // hold 0
  Ratify too_long = sample();
  too_long.hold_s = migrate::max_ratify_hold_s + 1;
  CHECK(migrate::decode_ratify(migrate::encode_ratify(too_long)).error() == RatifyError::bad_field);
  CHECK(with(23, 5).error() == RatifyError::bad_field);  // ip version 5
  auto many = bytes;
  many[21] = 0x10;  // 4097
  many[22] = 0x01;
  CHECK(migrate::decode_ratify(many).error() == RatifyError::oversized);
  CHECK(std::string(migrate::ratify_error_name(RatifyError::oversized)).size() > 0);
}

TEST_CASE("the filter takes a fresh ratify from a member, once") {
  RatifyFilter filter;
  Ratify r = sample();
  r.issued_at_ms = now - 100;
  const auto a = key(1), b = key(2);
  CHECK(filter.check(r, a, true, now) == RatifyVerdict::accept);
  filter.remember(r, a);
  // Replayed (the same, or an older one arriving late), also in a new control connection.
  CHECK(filter.check(r, a, true, now) == RatifyVerdict::replayed);
  Ratify older = r;
  older.sequence -= 1;
  CHECK(filter.check(older, a, true, now) == RatifyVerdict::replayed);
  Ratify next = r;
  next.sequence += 1;
  CHECK(filter.check(next, a, true, now) == RatifyVerdict::accept);
  // Sequences are per sender: another member's first one is fresh.
  CHECK(filter.check(older, b, true, now) == RatifyVerdict::accept);
}

TEST_CASE("the filter refuses non-members, stale, future and unusable addresses, changing nothing") {
  RatifyFilter filter(migrate::RatifyLimits{30'000, 5'000, 256});
  Ratify r = sample();
  r.issued_at_ms = now - 100;
  const auto a = key(1);
  CHECK(filter.check(r, a, false, now) == RatifyVerdict::not_member);  // forged standing: no certificate
  Ratify stale = r;
  stale.issued_at_ms = now - 30'001;
  CHECK(filter.check(stale, a, true, now) == RatifyVerdict::stale);
  Ratify future = r;
  future.issued_at_ms = now + 5'001;
  CHECK(filter.check(future, a, true, now) == RatifyVerdict::from_future);
  for (const char* bad : {"0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255", "::", "::1", "ff02::1",
                          "::ffff:198.18.1.2"}) {
    Ratify with_bad = r;
    with_bad.addresses.push_back(*IpAddress::parse(bad));
    CHECK_MESSAGE(filter.check(with_bad, a, true, now) == RatifyVerdict::bad_address, bad);
  }
  // None of these was remembered: the original is still fresh.
  CHECK(filter.check(r, a, true, now) == RatifyVerdict::accept);
  CHECK(std::string(migrate::ratify_verdict_name(RatifyVerdict::stale)) == "stale");
}

}  // namespace
