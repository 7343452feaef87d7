#include "crypto/segment_mac.hpp"

#include <cstring>

namespace roam::crypto {

namespace {
constexpr char label[] = "roamstack segment mac v1";
}  // namespace

SegmentMacKey::SegmentMacKey(std::span<const uint8_t, 64> handshake_hash, uint64_t connection_id) {
  uint8_t message[sizeof(label) - 1 + 8];
  std::memcpy(message, label, sizeof(label) - 1);
  for (int i = 0; i < 8; ++i) message[sizeof(label) - 1 + i] = static_cast<uint8_t>(connection_id >> (56 - 8 * i));
  crypto_generichash(key_.data(), crypto_shorthash_siphashx24_KEYBYTES, message, sizeof message, handshake_hash.data(),
                     handshake_hash.size());
}

SegmentMacKey::SegmentMacKey(std::span<const uint8_t, key_bytes> key) {
  std::memcpy(key_.data(), key.data(), key_bytes);
}

void SegmentMacKey::export_key(std::span<uint8_t, key_bytes> out) const {
  std::memcpy(out.data(), key_.data(), key_bytes);
}

SegmentMacTag SegmentMacKey::tag(const SegmentFields& f) const {
  uint8_t header[1 + 8 + 4 + 4 + 1 + 2];
  size_t at = 0;
  header[at++] = static_cast<uint8_t>(f.direction);
  for (int i = 0; i < 8; ++i) header[at++] = static_cast<uint8_t>(f.connection_id >> (56 - 8 * i));
  for (int i = 0; i < 4; ++i) header[at++] = static_cast<uint8_t>(f.seq >> (24 - 8 * i));
  for (int i = 0; i < 4; ++i) header[at++] = static_cast<uint8_t>(f.ack >> (24 - 8 * i));
  header[at++] = f.flags;
  header[at++] = static_cast<uint8_t>(f.window >> 8);
  header[at++] = static_cast<uint8_t>(f.window);
  scratch_.resize(sizeof header + f.payload.size());
  std::memcpy(scratch_.data(), header, sizeof header);
  if (!f.payload.empty()) std::memcpy(scratch_.data() + sizeof header, f.payload.data(), f.payload.size());
  uint8_t full[crypto_shorthash_siphashx24_BYTES];
  crypto_shorthash_siphashx24(full, scratch_.data(), scratch_.size(), key_.data());
  SegmentMacTag out;
  std::memcpy(out.data(), full, out.size());
  return out;
}

bool SegmentMacKey::verify(const SegmentFields& fields, std::span<const uint8_t, segment_mac_tag_bytes> carried) const {
  auto expected = tag(fields);
  return sodium_memcmp(expected.data(), carried.data(), expected.size()) == 0;
}

}  // namespace roam::crypto
