// The SYN cookie codec: every field survives the round trip (rounded down to its table),
// and a cookie verifies only with its own secret, period, 4-tuple and client ISN.
#include "stack/defense/syn_cookie.hpp"

#include <doctest/doctest.h>


namespace {

using namespace roam::defense;

std::array<uint8_t, cookie_key_bytes> key_of(uint8_t seed) {
  std::array<uint8_t, cookie_key_bytes> key{};
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(seed + i * 7);
  return key;
}

CookieFlow sample_flow(uint8_t version = 4) {
  CookieFlow flow;
  flow.version = version;
  if (version == 4) {
    flow.local = {198, 18, 12, 2};
    flow.remote = {198, 18, 11, 2};
  } else {
    flow.local = {0x20, 0x01, 0x0d, 0xb8, 0, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
    flow.remote = {0x20, 0x01, 0x0d, 0xb8, 0, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  }
  flow.local_port = 7000;
  flow.remote_port = 40000;
  return flow;
}

}  // namespace

TEST_CASE("a cookie round-trips every MSS, window scale and SACK value its tables hold") {
  const auto key = key_of(1);
  for (uint8_t version : {uint8_t{4}, uint8_t{6}}) {
    for (uint16_t mss : cookie_mss_table) {
      for (uint8_t scale : cookie_window_scale_table) {
        for (bool sack : {false, true}) {
          CookieParams params;
          params.mss = mss;
          if (scale != no_window_scaling) params.window_scale = scale;
          params.sack_permitted = sack;
          for (uint32_t counter : {0u, 1u, 12345u}) {
            CAPTURE(mss);
            CAPTURE(int{scale});
            CAPTURE(counter);
            const uint32_t cookie = encode_cookie(key, counter, sample_flow(version), 0xdeadbeef, params);
            CHECK(cookie_generation(cookie) == (counter & 1u));
            auto decoded = decode_cookie(key, counter, sample_flow(version), 0xdeadbeef, cookie);
            REQUIRE(decoded);
            CHECK(*decoded == params);
          }
        }
      }
    }
  }
}

TEST_CASE("values between table entries round down, never up") {
  CookieParams odd;
  odd.mss = 1459;
  odd.window_scale = 5;
  auto rounded = round_cookie_params(odd);
  CHECK(rounded.mss == 1440);
  CHECK(rounded.window_scale == 4);
  odd.mss = 100;  // below the table: 536, the smallest any host must take
  odd.window_scale = 14;
  rounded = round_cookie_params(odd);
  CHECK(rounded.mss == 536);
  CHECK(rounded.window_scale == 9);
  odd.window_scale.reset();
  CHECK(!round_cookie_params(odd).window_scale);

  const auto key = key_of(2);
  const uint32_t cookie = encode_cookie(key, 7, sample_flow(), 1, odd);
  auto decoded = decode_cookie(key, 7, sample_flow(), 1, cookie);
  REQUIRE(decoded);
  CHECK(*decoded == round_cookie_params(odd));
}

TEST_CASE("a cookie fails with another secret, period, 4-tuple, client ISN or a changed bit") {
  const auto key = key_of(3);
  CookieParams params;
  params.mss = 1460;
  params.window_scale = 7;
  const CookieFlow flow = sample_flow();
  const uint32_t cookie = encode_cookie(key, 100, flow, 555, params);
  REQUIRE(decode_cookie(key, 100, flow, 555, cookie));

  CHECK(!decode_cookie(key_of(4), 100, flow, 555, cookie));  // another secret
  CHECK(!decode_cookie(key, 101, flow, 555, cookie));        // another generation
  CHECK(!decode_cookie(key, 102, flow, 555, cookie));        // same generation, another period
  CHECK(!decode_cookie(key, 100, flow, 556, cookie));        // another client ISN
  auto tampered = flow;
  tampered.remote_port = 40001;
  CHECK(!decode_cookie(key, 100, tampered, 555, cookie));
  tampered = flow;
  tampered.local_port = 7001;
  CHECK(!decode_cookie(key, 100, tampered, 555, cookie));
  tampered = flow;
  tampered.remote[3] ^= 1;
  CHECK(!decode_cookie(key, 100, tampered, 555, cookie));
  tampered = flow;
  tampered.local[0] ^= 0x80;
  CHECK(!decode_cookie(key, 100, tampered, 555, cookie));
  tampered = flow;
  tampered.version = 6;
  CHECK(!decode_cookie(key, 100, tampered, 555, cookie));
  // Any one bit flipped: the MAC bits or the fields it covers (an attacker cannot raise
  // the MSS or window scale of a cookie it saw).
  for (int bit = 0; bit < 32; ++bit) {
    if (bit == 7) continue;  // the generation bit: checked against the period above
    CAPTURE(bit);
    CHECK(!decode_cookie(key, 100, flow, 555, cookie ^ (1u << bit)));
  }
}

TEST_CASE("the jar verifies a cookie in its own period and the next, and not after") {
  CookieJar jar(15'000);
  const CookieFlow flow = sample_flow();
  CookieParams params;
  params.mss = 1460;
  const uint64_t made_at = 1'000'000;  // period 66, 10 s in
  const uint32_t cookie = jar.make(made_at, flow, 42, params);
  CHECK(jar.check(made_at, flow, 42, cookie) == params);
  CHECK(jar.check(made_at + 4'999, flow, 42, cookie) == params);   // same period
  CHECK(jar.check(made_at + 5'000, flow, 42, cookie) == params);   // the next period
  // A cookie made in the next period rotates that period's secret in; the old one stays.
  const uint32_t later = jar.make(made_at + 6'000, flow, 43, params);
  CHECK(jar.check(made_at + 6'000, flow, 42, cookie) == params);
  CHECK(jar.check(made_at + 6'000, flow, 43, later) == params);
  CHECK(!jar.check(made_at + 20'000, flow, 42, cookie));  // two periods on: expired
  CHECK(jar.check(made_at + 20'000, flow, 43, later) == params);
  // A new secret in a period two on: nothing of the old one verifies any more.
  (void)jar.make(made_at + 20'000, flow, 44, params);
  CHECK(!jar.check(made_at + 20'000, flow, 42, cookie));
  CHECK(!jar.check(made_at + 40'000, flow, 43, later));
}

TEST_CASE("two jars (two processes) do not accept each other's cookies") {
  CookieJar a;
  CookieJar b;
  CookieParams params;
  const uint32_t cookie = a.make(50'000, sample_flow(), 9, params);
  (void)b.make(50'000, sample_flow(), 9, params);
  CHECK(a.check(50'000, sample_flow(), 9, cookie));
  CHECK(!b.check(50'000, sample_flow(), 9, cookie));
}
