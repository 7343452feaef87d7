// MoveNotice: "the server you talk to at OLD:PORT is now at NEW:PORT", sent by the old
// server to each client host over the carrier link (lwIP UDP), and its acknowledgement.
// An UNAUTHENTICATED stepping stone: anyone who can send to the client can redirect it.
// The control-channel issue replaces it with the authenticated Address Change Message and
// keeps the rewrite path (migrate::rewrite_remote). Pure; any thread.
//
//   "RSMV" | u8 version (1) | u8 kind (1 notice, 2 ack) | u32 sequence | u8 ip version
//   | old address (4 or 16) | new address (4 or 16) | u16 old port | u16 new port
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "stack/wire/ip_prefix.hpp"

namespace roam::migrate {

inline constexpr uint16_t default_notice_port = 7001;

enum class MoveNoticeKind : uint8_t { notice = 1, ack = 2 };

struct MoveNotice {
  MoveNoticeKind kind = MoveNoticeKind::notice;
  uint32_t sequence = 0;
  wire::IpAddress old_address;
  wire::IpAddress new_address;
  uint16_t old_port = 0;
  uint16_t new_port = 0;
};

std::vector<uint8_t> encode_move_notice(const MoveNotice& notice);
// nullopt for anything malformed: wrong magic, version, kind, family mix, length, port 0.
std::optional<MoveNotice> decode_move_notice(std::span<const uint8_t> bytes);

}  // namespace roam::migrate
