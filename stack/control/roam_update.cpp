#include "stack/control/roam_update.hpp"

#include <cstring>

#include "crypto/roam_keys.hpp"
#include "stack/wire/byte_writer.hpp"

namespace roam::control {

void encode_roam_update_body(const RoamUpdate& update, std::vector<uint8_t>& out) {
  uint8_t items = static_cast<uint8_t>((update.pool ? roam_item_pool : 0) | (update.bits ? roam_item_bits : 0) |
                                       (update.position ? roam_item_position : 0) | (update.key ? roam_item_key : 0));
  wire::put_u8(out, items);
  wire::put_u64(out, update.issued_at_ms);
  if (update.pool) {
    wire::put_u32(out, update.pool->unit_ms);
    wire::put_u8(out, update.pool->m);
    wire::put_u8(out, static_cast<uint8_t>(update.pool->servers.size()));
    for (const auto& server : update.pool->servers) {
      wire::put_u8(out, server.address.version);
      wire::put_bytes(out, server.address.span());
      wire::put_u16(out, server.port);
    }
  }
  if (update.bits) {
    wire::put_u8(out, update.bits->m);
    wire::put_u32(out, update.bits->from_epoch);
  }
  if (update.position) {
    wire::put_u32(out, update.position->current);
    wire::put_u32(out, update.position->reference);
    wire::put_u64(out, static_cast<uint64_t>(update.position->until_reference_ms));
  }
  if (update.key) {
    wire::put_u32(out, update.key->index);
    wire::put_bytes(out, update.key->key);
  }
}

Result<RoamUpdate, RoamUpdateError> decode_roam_update_body(wire::ByteReader& r) {
  RoamUpdate u;
  uint8_t items = r.u8();
  u.issued_at_ms = r.u64();
  if (r.failed()) return unexpected(RoamUpdateError::truncated);
  constexpr uint8_t known = roam_item_pool | roam_item_bits | roam_item_position | roam_item_key;
  if (items == 0 || (items & ~known) != 0) return unexpected(RoamUpdateError::bad_field);
  if (items & roam_item_pool) {
    RoamPoolItem pool;
    pool.unit_ms = r.u32();
    pool.m = r.u8();
    uint8_t count = r.u8();
    if (r.failed()) return unexpected(RoamUpdateError::truncated);
    if (pool.unit_ms == 0 || pool.m > crypto::max_epoch_bits || count == 0 || count > crypto::max_roam_servers)
      return unexpected(RoamUpdateError::bad_field);
    for (uint8_t i = 0; i < count; ++i) {
      RoamServer server;
      uint8_t version = r.u8();
      if (r.failed()) return unexpected(RoamUpdateError::truncated);
      if (version != 4 && version != 6) return unexpected(RoamUpdateError::bad_field);
      server.address.version = version;
      auto address = r.take(server.address.size());
      server.port = r.u16();
      if (r.failed()) return unexpected(RoamUpdateError::truncated);
      std::memcpy(server.address.bytes.data(), address.data(), address.size());
      pool.servers.push_back(server);
    }
    u.pool = std::move(pool);
  }
  if (items & roam_item_bits) {
    RoamBitsItem bits;
    bits.m = r.u8();
    bits.from_epoch = r.u32();
    if (r.failed()) return unexpected(RoamUpdateError::truncated);
    if (bits.m > crypto::max_epoch_bits) return unexpected(RoamUpdateError::bad_field);
    u.bits = bits;
  }
  if (items & roam_item_position) {
    RoamPositionItem position;
    position.current = r.u32();
    position.reference = r.u32();
    position.until_reference_ms = static_cast<int64_t>(r.u64());
    if (r.failed()) return unexpected(RoamUpdateError::truncated);
    u.position = position;
  }
  if (items & roam_item_key) {
    RoamKeyItem key;
    key.index = r.u32();
    auto bytes = r.take(crypto::chain_key_bytes);
    if (r.failed()) return unexpected(RoamUpdateError::truncated);
    std::memcpy(key.key.data(), bytes.data(), bytes.size());
    u.key = key;
  }
  return u;
}

}  // namespace roam::control
