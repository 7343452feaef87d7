// ROAM_UPDATE (channel message type 9; seed 002 section IV-A "roaming update messages"):
// what a pool member tells its authenticated clients so they can follow the roaming
// service. Pure encode/decode of the body that follows the type byte (messages.cpp
// dispatches here); the meaning and the checks a client applies are in roam_tracker.hpp.
// Any thread. Layout: PROTOCOL.md 13.4.
//
//   u8 items (bit field, at least one, unknown bits refused) | u64 issued_at_ms (Unix)
//   then each present item, in bit order:
//   0x01 pool      u32 unit_ms (>= 1) | u8 m (<= 24) | u8 N (1..64)
//                  | N x (u8 ip version | 4|16 address | u16 port)    servers[0..N-1]
//   0x02 bits      u8 m (<= 24) | u32 l            m holds from epoch l on (the paper's m, l)
//   0x04 position  u32 r | u32 j | i64 N_j         r: the current epoch; N_j: milliseconds
//                                                  from issued_at until E_j starts (r, j, N_j)
//   0x08 key       u32 t | 32 bytes K_t            the newest chain key granted (t, K_t)
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "base/ip_address.hpp"
#include "base/result.hpp"
#include "crypto/hash_chain.hpp"
#include "stack/wire/byte_reader.hpp"

namespace roam::control {

inline constexpr uint8_t roam_item_pool = 0x01;
inline constexpr uint8_t roam_item_bits = 0x02;
inline constexpr uint8_t roam_item_position = 0x04;
inline constexpr uint8_t roam_item_key = 0x08;

struct RoamServer {
  IpAddress address;
  uint16_t port = 0;
  bool operator==(const RoamServer&) const = default;
};

struct RoamPoolItem {
  uint32_t unit_ms = 1000;
  uint8_t m = 0;  // m from the pool's first epoch on, until a bits item says otherwise
  std::vector<RoamServer> servers;
  bool operator==(const RoamPoolItem&) const = default;
};

struct RoamBitsItem {
  uint8_t m = 0;
  uint32_t from_epoch = 0;  // l
  bool operator==(const RoamBitsItem&) const = default;
};

struct RoamPositionItem {
  uint32_t current = 0;           // r
  uint32_t reference = 0;         // j
  int64_t until_reference_ms = 0;  // N_j, from issued_at_ms
  bool operator==(const RoamPositionItem&) const = default;
};

struct RoamKeyItem {
  uint32_t index = 0;  // t
  crypto::ChainKey key{};
  bool operator==(const RoamKeyItem&) const = default;
};

struct RoamUpdate {
  uint64_t issued_at_ms = 0;
  std::optional<RoamPoolItem> pool;
  std::optional<RoamBitsItem> bits;
  std::optional<RoamPositionItem> position;
  std::optional<RoamKeyItem> key;
  bool operator==(const RoamUpdate&) const = default;
};

enum class RoamUpdateError : uint8_t { truncated, bad_field };

// Appends the body (not the type byte). The update must be valid: at least one item,
// fields in range (decode of the result gives it back).
void encode_roam_update_body(const RoamUpdate& update, std::vector<uint8_t>& out);
// Reads the body from r (the caller checks for trailing bytes).
Result<RoamUpdate, RoamUpdateError> decode_roam_update_body(wire::ByteReader& r);

}  // namespace roam::control
