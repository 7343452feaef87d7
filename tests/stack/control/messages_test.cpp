// Control messages: every kind round-trips (v4 and v6 ACMs), known bytes decode, every
// truncation and each bad field is refused.
#include "stack/control/messages.hpp"

#include <doctest/doctest.h>

#include <array>
#include <vector>

namespace {

using namespace roam::control;
using roam::IpAddress;

// The handover token of the documented examples: bytes 00 01 .. 1f.
std::array<uint8_t, handover_token_bytes> counting_token() {
  std::array<uint8_t, handover_token_bytes> token{};
  for (size_t i = 0; i < token.size(); ++i) token[i] = static_cast<uint8_t>(i);
  return token;
}

AddressChange sample_acm(bool v6) {
  AddressChange m;
  m.sequence = 42;
  for (size_t i = 0; i < m.nonce.size(); ++i) m.nonce[i] = static_cast<uint8_t>(i * 7);
  m.issued_at_ms = 1'795'000'000'000;
  m.scope = AcmScope::connections;
  m.old_address = *IpAddress::parse(v6 ? "2001:db8:12::2" : "198.18.12.2");
  m.new_address = *IpAddress::parse(v6 ? "2001:db8:13::2" : "198.18.13.2");
  m.old_port = 7000;
  m.new_port = 7000;
  m.connection_ids = {1, 2, 0xFFFFFFFFFFFFFFFFull};
  return m;
}

std::vector<Message> samples() {
  AddressChange global = sample_acm(false);
  global.scope = AcmScope::global;
  global.old_port = 0;
  global.connection_ids.clear();
  // A transfer notification (seed 004): no ids, no token, the target's certificate.
  AddressChange transfer = sample_acm(false);
  transfer.scope = AcmScope::transfer;
  transfer.old_port = 0;
  transfer.new_port = 0;
  transfer.connection_ids.clear();
  transfer.target_credential.assign(137, 0x3C);
  AddressChange certified = sample_acm(true);
  certified.target_credential.assign(137, 0xA5);
  return {Hello{1, "server-a", 3, {}},
          Hello{2, "pool-member", 1, std::vector<uint8_t>(137, 0x5A)},
          certified,
          sample_acm(false),
          sample_acm(true),
          global,
          transfer,
          Ack{42, AckStatus::refused}, Ack{43, AckStatus::rebound},
          ErrorMessage{7, "no such connection"},
          ErrorMessage{0, ""},
          RegisterConnections{{7}},
          RegisterConnections{{1, 0xFFFFFFFFFFFFFFFFull, 0x0123456789ABCDEFull}},
          CheckpointPush{std::vector<uint8_t>(93, 0x7E)},
          CheckpointPush{std::vector<uint8_t>(max_sealed_bytes, 0x11)},
          ResumeRequest{0x1122334455667788ull, 0x9001, 0x35bd3c33u, 0x35bd3c40u, std::vector<uint8_t>(120, 0x42)},
          ResumeAnswer{5, 9, ResumeStatus::resumed, resume_reason_none, std::nullopt},
          ResumeAnswer{5, 9, ResumeStatus::resumed, resume_reason_none, counting_token()},
          ResumeAnswer{5, 9, ResumeStatus::refused, 11, std::nullopt},
          ResumeAnswer{5, 0, ResumeStatus::refused, resume_reason_connection_live, std::nullopt}};
}

TEST_CASE("every control message round-trips") {
  for (const auto& m : samples()) {
    auto bytes = encode_message(m);
    auto decoded = decode_message(bytes);
    REQUIRE(decoded);
    CHECK(decoded.value() == m);
    CHECK(encode_message(decoded.value()) == bytes);
  }
}

TEST_CASE("an ACK decodes from known bytes") {
  const uint8_t bytes[] = {3, 0, 0, 0, 0, 0, 0, 1, 0, 0};
  auto decoded = decode_message(bytes);
  REQUIRE(decoded);
  CHECK(std::get<Ack>(decoded.value()) == Ack{256, AckStatus::applied});
}

TEST_CASE("every truncation of every message is refused, and a trailing byte too") {
  for (const auto& m : samples()) {
    auto bytes = encode_message(m);
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
      auto decoded = decode_message(std::span(bytes.data(), cut));
      REQUIRE_FALSE(decoded);
    }
    bytes.push_back(0);
    auto decoded = decode_message(bytes);
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error() == MessageError::trailing_bytes);
  }
}

TEST_CASE("bad fields are refused") {
  auto refuse = [](std::vector<uint8_t> bytes, MessageError error) {
    auto decoded = decode_message(bytes);
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error() == error);
  };
  refuse({200}, MessageError::unknown_type);  // 9 ROAM_UPDATE, 10-12 checkpoints; 7, 8 are planned
  refuse({7}, MessageError::unknown_type);
  refuse({13}, MessageError::unknown_type);
  refuse({}, MessageError::truncated);
  auto acm = encode_message(sample_acm(false));
  auto with = [&](size_t offset, uint8_t value) {
    auto copy = acm;
    copy[offset] = value;
    return copy;
  };
  const size_t scope_at = 1 + 8 + 16 + 8, family_at = scope_at + 1;
  refuse(with(scope_at, 3), MessageError::bad_field);  // transfer scope with ids
  refuse(with(scope_at, 4), MessageError::bad_field);
  refuse(with(scope_at, 0), MessageError::bad_field);
  // A transfer notification carries no handover token: it moves no connection.
  AddressChange transfer_with_token = sample_acm(false);
  transfer_with_token.scope = AcmScope::transfer;
  transfer_with_token.connection_ids.clear();
  transfer_with_token.handover_token.emplace();
  refuse(encode_message(transfer_with_token), MessageError::bad_field);
  refuse(with(family_at, 5), MessageError::bad_field);
  // Connection scope with no ids; global scope with ids.
  AddressChange empty = sample_acm(false);
  empty.connection_ids.clear();
  refuse(encode_message(empty), MessageError::bad_field);
  AddressChange global_with_ids = sample_acm(false);
  global_with_ids.scope = AcmScope::global;
  refuse(encode_message(global_with_ids), MessageError::bad_field);
  // A move to where it already is.
  AddressChange nowhere = sample_acm(false);
  nowhere.new_address = nowhere.old_address;
  refuse(encode_message(nowhere), MessageError::bad_field);
  // Too many ids (the count is checked before anything is allocated).
  auto many = encode_message(sample_acm(false));
  const size_t count_at = family_at + 1 + 4 + 4 + 2 + 2;
  many[count_at] = 0xFF;
  many[count_at + 1] = 0xFF;
  refuse(many, MessageError::oversized);
  // Host ids outside the alphabet, version 0, ack status 3.
  refuse(encode_message(Hello{1, "bad id", 0, {}}), MessageError::bad_field);
  refuse(encode_message(Hello{0, "ok", 0, {}}), MessageError::bad_field);
  refuse({3, 0, 0, 0, 0, 0, 0, 0, 1, 3}, MessageError::bad_field);
  // REGISTER: no ids, id 0, a count beyond the bound.
  refuse({5, 0, 0}, MessageError::bad_field);
  refuse(encode_message(RegisterConnections{{4, 0}}), MessageError::bad_field);
  refuse({5, 0xFF, 0xFF}, MessageError::oversized);
  CHECK(std::string(message_error_name(MessageError::oversized)).size() > 0);
}

TEST_CASE("a transfer notification encodes as docs/PROTOCOL.md 12.1 shows") {
  AddressChange t;
  t.sequence = 0x0000018f00000401ull;
  for (size_t i = 0; i < t.nonce.size(); ++i) t.nonce[i] = static_cast<uint8_t>(0xa0 + i);
  t.issued_at_ms = 1'700'000'000'000ull;
  t.scope = AcmScope::transfer;
  t.old_address = *IpAddress::parse("198.18.12.2");
  t.new_address = *IpAddress::parse("198.18.13.2");
  const std::vector<uint8_t> documented = {
      0x02, 0x00, 0x00, 0x01, 0x8f, 0x00, 0x00, 0x04, 0x01, 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6,
      0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x68,
      0x00, 0x03, 0x04, 0xc6, 0x12, 0x0c, 0x02, 0xc6, 0x12, 0x0d, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00};
  CHECK(encode_message(t) == documented);
  auto decoded = decode_message(documented);
  REQUIRE(decoded);
  CHECK(std::get<AddressChange>(*decoded) == t);
}

}  // namespace

TEST_CASE("checkpoint messages decode from the documented bytes (PROTOCOL.md 14.3)") {
  const std::vector<uint8_t> push = {10, 0x00, 0x03, 0xAA, 0xBB, 0xCC};
  auto decoded = decode_message(push);
  REQUIRE(decoded);
  CHECK(std::get<CheckpointPush>(decoded.value()).sealed == std::vector<uint8_t>{0xAA, 0xBB, 0xCC});
  const std::vector<uint8_t> resume = {11, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x00, 0x00, 0x90, 0x01,
                                       0x35, 0xbd, 0x3c, 0x33, 0x35, 0xbd, 0x3c, 0x40, 0x00, 0x01, 0x5A};
  decoded = decode_message(resume);
  REQUIRE(decoded);
  CHECK(std::get<ResumeRequest>(decoded.value()) ==
        ResumeRequest{0x1122334455667788ull, 0x9001, 0x35bd3c33u, 0x35bd3c40u, {0x5A}});
  CHECK(encode_message(decoded.value()) == resume);
  const std::vector<uint8_t> answer = {12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 1, 11, 0};
  decoded = decode_message(answer);
  REQUIRE(decoded);
  CHECK(std::get<ResumeAnswer>(decoded.value()) == ResumeAnswer{5, 9, ResumeStatus::refused, 11, std::nullopt});
  CHECK(encode_message(decoded.value()) == answer);
  // Resumed, with the NAT handover token 00 01 .. 1f (52 bytes).
  std::vector<uint8_t> resumed = {12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 32};
  for (uint8_t i = 0; i < 32; ++i) resumed.push_back(i);
  REQUIRE(resumed.size() == 52);
  decoded = decode_message(resumed);
  REQUIRE(decoded);
  CHECK(std::get<ResumeAnswer>(decoded.value()) ==
        ResumeAnswer{5, 9, ResumeStatus::resumed, resume_reason_none, counting_token()});
  CHECK(encode_message(decoded.value()) == resumed);
}

TEST_CASE("checkpoint messages with bad fields are refused") {
  auto refused = [](std::vector<uint8_t> bytes) {
    auto decoded = decode_message(bytes);
    REQUIRE_FALSE(decoded);
    CHECK(decoded.error() == MessageError::bad_field);
  };
  refused({10, 0, 0});  // an empty checkpoint
  std::vector<uint8_t> too_long = {10, 0xEA, 0x61};  // 60001 bytes
  too_long.resize(3 + max_sealed_bytes + 1, 0x11);
  refused(too_long);
  // RESUME: connection id 0; snd_nxt behind snd_una; empty checkpoint.
  refused({11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x90, 0x01, 0, 0, 0, 9, 0, 0, 0, 9, 0, 1, 0x5A});
  refused({11, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x90, 0x01, 0, 0, 0, 9, 0, 0, 0, 8, 0, 1, 0x5A});
  refused({11, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0x90, 0x01, 0, 0, 0, 9, 0, 0, 0, 9, 0, 0});
  // RESUMED: status 2; resumed with a reason; refused without one or with an unknown one.
  refused({12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 2, 0, 0});
  refused({12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 3, 0});
  refused({12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 1, 0, 0});
  refused({12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 1, 13, 0});
  refused({12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0});
  // RESUMED's token: a length other than 0 or 32 (the bytes are there), or one on a refusal.
  for (int length : {1, 31, 33, 255}) {
    std::vector<uint8_t> bytes = {12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, static_cast<uint8_t>(length)};
    bytes.resize(bytes.size() + static_cast<size_t>(length), 0x11);
    refused(bytes);
  }
  std::vector<uint8_t> refusal_with_token = {12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 1, 11, 32};
  refusal_with_token.resize(refusal_with_token.size() + 32, 0x11);
  refused(refusal_with_token);
}

TEST_CASE("a RESUMED of the layout without a token length is refused as truncated") {
  // The layout before the handover token (19 bytes) is not accepted as "no token".
  auto decoded = decode_message(std::vector<uint8_t>{12, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0});
  REQUIRE_FALSE(decoded);
  CHECK(decoded.error() == MessageError::truncated);
}
