// NoiseStream (the control port's transport): two ends complete XX, learn each other's
// static key and credential, and carry a stream of any size both ways; a flipped bit, a
// replayed or reordered record, a wrong turn or an oversized payload kills the stream.
#include "crypto/noise_stream.hpp"

#include <doctest/doctest.h>

#include <string>

namespace {

using namespace roam::crypto;

struct Pair {
  IdentityKey initiator_key = IdentityKey::generate();
  IdentityKey responder_key = IdentityKey::generate();
  NoiseStream initiator{NoiseRole::initiator, initiator_key, {1, 2, 3}};
  NoiseStream responder{NoiseRole::responder, responder_key, {9, 8}};

  // Runs the handshake; returns the bytes the initiator sent last (message 3).
  std::vector<uint8_t> handshake() {
    std::vector<uint8_t> m1 = initiator.start(), m2, m3, plain;
    REQUIRE(responder.feed(m1, m2, plain));
    REQUIRE_FALSE(m2.empty());
    REQUIRE(initiator.feed(m2, m3, plain));
    REQUIRE(initiator.established());
    REQUIRE(responder.feed(m3, m2, plain));
    REQUIRE(responder.established());
    CHECK(plain.empty());
    return m3;
  }
};

std::vector<uint8_t> bytes_of(const std::string& text) {
  return {text.begin(), text.end()};
}

TEST_CASE("noise stream: handshake authenticates both keys and credentials, stream flows both ways") {
  Pair pair;
  pair.handshake();
  CHECK(pair.initiator.remote_static() == pair.responder_key.public_key());
  CHECK(pair.responder.remote_static() == pair.initiator_key.public_key());
  CHECK(pair.initiator.peer_credential() == std::vector<uint8_t>{9, 8});
  CHECK(pair.responder.peer_credential() == std::vector<uint8_t>{1, 2, 3});

  // 200 KiB: split into records, fed back one byte at a time for the first ones.
  std::vector<uint8_t> big(200 * 1024);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> wire, reply, plain;
  REQUIRE(pair.initiator.seal(big, wire));
  CHECK(wire.size() > big.size());
  for (size_t i = 0; i < 100; ++i) REQUIRE(pair.responder.feed({&wire[i], 1}, reply, plain));
  REQUIRE(pair.responder.feed(std::span<const uint8_t>(wire).subspan(100), reply, plain));
  CHECK(plain == big);
  CHECK(reply.empty());

  wire.clear();
  plain.clear();
  REQUIRE(pair.responder.seal(bytes_of("pong"), wire));
  REQUIRE(pair.initiator.feed(wire, reply, plain));
  CHECK(plain == bytes_of("pong"));
}

TEST_CASE("noise stream: a flipped bit, a replayed or a dropped record is fatal") {
  for (int attack = 0; attack < 3; ++attack) {
    Pair pair;
    pair.handshake();
    std::vector<uint8_t> first, second, reply, plain;
    REQUIRE(pair.initiator.seal(bytes_of("one"), first));
    REQUIRE(pair.initiator.seal(bytes_of("two"), second));
    if (attack == 0) {
      first.back() ^= 1;
      CHECK(pair.responder.feed(first, reply, plain).error() == NoiseStreamError::forged);
    } else if (attack == 1) {
      REQUIRE(pair.responder.feed(first, reply, plain));
      CHECK(pair.responder.feed(first, reply, plain).error() == NoiseStreamError::forged);
    } else {
      CHECK(pair.responder.feed(second, reply, plain).error() == NoiseStreamError::forged);
    }
    CHECK(pair.responder.failed());
    // Nothing forged came out, and nothing gets out afterwards.
    CHECK((plain.empty() || plain == bytes_of("one")));
    size_t before = plain.size();
    CHECK_FALSE(pair.responder.feed(second, reply, plain));
    CHECK(plain.size() == before);
  }
}

TEST_CASE("noise stream: handshake failures and misuse") {
  SUBCASE("a peer speaking first out of turn") {
    auto key = IdentityKey::generate();
    NoiseStream initiator(NoiseRole::initiator, key, {});
    std::vector<uint8_t> reply, plain;
    (void)initiator.start();
    std::vector<uint8_t> junk = {0, 4, 1, 2, 3, 4};
    CHECK_FALSE(initiator.feed(junk, reply, plain));
    CHECK(initiator.failed());
  }
  SUBCASE("a zero length is fatal") {
    auto key = IdentityKey::generate();
    NoiseStream responder(NoiseRole::responder, key, {});
    std::vector<uint8_t> reply, plain;
    CHECK(responder.feed(std::vector<uint8_t>{0, 0}, reply, plain).error() == NoiseStreamError::bad_length);
  }
  SUBCASE("seal before the handshake") {
    auto key = IdentityKey::generate();
    NoiseStream responder(NoiseRole::responder, key, {});
    std::vector<uint8_t> out;
    CHECK(responder.seal(bytes_of("x"), out).error() == NoiseStreamError::not_established);
  }
  SUBCASE("a tampered handshake message") {
    Pair pair;
    std::vector<uint8_t> m1 = pair.initiator.start(), m2, plain;
    REQUIRE(pair.responder.feed(m1, m2, plain));
    m2.back() ^= 0x80;
    std::vector<uint8_t> m3;
    CHECK(pair.initiator.feed(m2, m3, plain).error() == NoiseStreamError::handshake_failed);
  }
  SUBCASE("a different prologue or protocol cannot complete") {
    auto a = IdentityKey::generate();
    auto b = IdentityKey::generate();
    NoiseStream initiator(NoiseRole::initiator, a, {});
    NoiseHandshake other(NoisePattern::xx, NoiseRole::responder, b, std::vector<uint8_t>{'x'});
    std::vector<uint8_t> m1 = initiator.start(), m3, plain;
    REQUIRE(other.read_message(std::span<const uint8_t>(m1).subspan(2)));
    auto m2 = other.write_message({});
    REQUIRE(m2);
    std::vector<uint8_t> framed = {static_cast<uint8_t>(m2->size() >> 8), static_cast<uint8_t>(m2->size())};
    framed.insert(framed.end(), m2->begin(), m2->end());
    CHECK(initiator.feed(framed, m3, plain).error() == NoiseStreamError::handshake_failed);
  }
}

}  // namespace
