// The session payload (control_frame.hpp, docs/PROTOCOL.md 4.3): known bytes decode and
// encode back to the same bytes; every truncation, a version-1 payload, and each bad field
// are refused.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "stack/migrate/control_frame.hpp"

namespace {

using namespace roam::migrate;

// Kind "pair", a client leg with a token of 0x11s and a 3-byte "snapshot", an origin leg
// with no token and a 2-byte one (the payload's framing does not look inside snapshots).
std::vector<uint8_t> two_leg_bytes() {
  std::vector<uint8_t> out = {0x00, 0x02, 0x04, 'p', 'a', 'i', 'r', 0x02, 0x01, 0x20};
  out.insert(out.end(), 32, 0x11);
  const std::vector<uint8_t> legs = {0x00, 0x00, 0x00, 0x03, 0xA1, 0xA2, 0xA3,  // client snapshot
                                    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0xB1, 0xB2};
  out.insert(out.end(), legs.begin(), legs.end());
  return out;
}

TEST_CASE("a two-leg session payload decodes from known bytes and encodes back to them") {
  auto bytes = two_leg_bytes();
  auto payload = decode_session_payload(bytes);
  REQUIRE(payload);
  CHECK(payload->kind == "pair");
  REQUIRE(payload->legs.size() == 2);
  CHECK(payload->legs[0].role == LegRole::client);
  REQUIRE(payload->legs[0].handover_token.has_value());
  CHECK((*payload->legs[0].handover_token)[31] == 0x11);
  CHECK(std::vector<uint8_t>(payload->legs[0].snapshot.begin(), payload->legs[0].snapshot.end()) ==
        std::vector<uint8_t>{0xA1, 0xA2, 0xA3});
  CHECK(payload->legs[1].role == LegRole::origin);
  CHECK_FALSE(payload->legs[1].handover_token.has_value());
  CHECK(payload->legs[1].snapshot.size() == 2);
  CHECK(encode_session_payload(*payload) == bytes);
}

TEST_CASE("every truncation of a session payload, and a byte after it, is refused") {
  auto bytes = two_leg_bytes();
  for (size_t size = 0; size < bytes.size(); ++size) {
    auto cut = decode_session_payload(std::span(bytes).first(size));
    CHECK_FALSE(cut);
  }
  bytes.push_back(0);
  auto trailing = decode_session_payload(bytes);
  REQUIRE_FALSE(trailing);
  CHECK(trailing.error() == SessionPayloadError::trailing_bytes);
}

TEST_CASE("a version-1 session payload and bad fields are refused") {
  // Version 1: u8 kind length | kind | u8 token length | snapshot.
  std::vector<uint8_t> v1 = {0x04, 'e', 'c', 'h', 'o', 0x00, 'R', 'S', 'N', 'P'};
  auto old = decode_session_payload(v1);
  REQUIRE_FALSE(old);
  CHECK(old.error() == SessionPayloadError::unknown_version);
  auto mutate = [](size_t at, uint8_t value) {
    auto bytes = two_leg_bytes();
    bytes[at] = value;
    return decode_session_payload(bytes);
  };
  CHECK(mutate(1, 3).error() == SessionPayloadError::unknown_version);
  CHECK(mutate(2, 0).error() == SessionPayloadError::bad_field);  // kind length 0
  CHECK(mutate(7, 0).error() == SessionPayloadError::bad_field);  // no legs
  CHECK(mutate(7, 9).error() == SessionPayloadError::bad_field);  // above 8 legs
  CHECK(mutate(8, 3).error() == SessionPayloadError::bad_field);  // unknown role
  CHECK(mutate(9, 5).error() == SessionPayloadError::bad_field);  // token neither 0 nor 32
  // A token on an origin leg.
  SessionPayload payload;
  payload.kind = "pair";
  std::vector<uint8_t> snapshot = {1, 2, 3};
  payload.legs.push_back({LegRole::origin, HandoverToken{}, snapshot});
  auto origin_token = decode_session_payload(encode_session_payload(payload));
  REQUIRE_FALSE(origin_token);
  CHECK(origin_token.error() == SessionPayloadError::bad_field);
}

}  // namespace

TEST_CASE("frames fed as taken-over buffers read the same as copied ones, split anywhere") {
  std::vector<uint8_t> stream;
  append_frame(FrameType::address_request, std::string_view("precopy"), stream);
  append_frame(FrameType::session, std::span<const uint8_t>(two_leg_bytes()), stream);
  append_frame(FrameType::reply, std::string_view(""), stream);
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    FrameReader reader;
    std::vector<Frame> frames;
    auto drain = [&] {
      while (true) {
        auto next = reader.next();
        REQUIRE(next.has_value());
        if (!next.value()) return;
        frames.push_back(std::move(*next.value()));
      }
    };
    // The first piece taken over (nothing buffered), the second too: after a partial
    // frame it is appended, after whole frames it replaces the consumed buffer.
    reader.feed(std::vector<uint8_t>(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(cut)));
    drain();
    reader.feed(std::vector<uint8_t>(stream.begin() + static_cast<std::ptrdiff_t>(cut), stream.end()));
    drain();
    REQUIRE(frames.size() == 3);
    CHECK(frames[0].type == FrameType::address_request);
    CHECK(std::string(frames[0].payload.begin(), frames[0].payload.end()) == "precopy");
    CHECK(frames[1].type == FrameType::session);
    CHECK(frames[1].payload == two_leg_bytes());
    CHECK(frames[2].type == FrameType::reply);
    CHECK(frames[2].payload.empty());
  }
}
