#include "crypto/handover_mac.hpp"

#include <cstring>

#include "crypto/sodium.hpp"

namespace roam::crypto {

namespace {
constexpr char label[] = "roamstack handover v1";

void put_be(uint8_t* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(value >> (8 * (bytes - 1 - i)));
}
}  // namespace

HandoverToken random_handover_token() {
  ensure_sodium();
  HandoverToken token;
  randombytes_buf(token.data(), token.size());
  return token;
}

HandoverTag handover_tag(const HandoverToken& token, const HandoverFields& f) {
  ensure_sodium();
  uint8_t message[sizeof(label) - 1 + 1 + 8 + 4 + 4 + 4];
  size_t at = sizeof(label) - 1;
  std::memcpy(message, label, at);
  message[at++] = static_cast<uint8_t>(f.kind);
  put_be(message + at, f.connection_id, 8);
  at += 8;
  put_be(message + at, f.seq, 4);
  at += 4;
  put_be(message + at, f.ack, 4);
  at += 4;
  put_be(message + at, f.peer_rcv_nxt, 4);
  uint8_t full[crypto_generichash_BYTES_MIN];
  crypto_generichash(full, sizeof full, message, sizeof message, token.data(), token.size());
  HandoverTag tag;
  std::memcpy(tag.data(), full, tag.size());
  return tag;
}

bool verify_handover_tag(const HandoverToken& token, const HandoverFields& fields,
                         std::span<const uint8_t, handover_tag_bytes> carried) {
  auto expected = handover_tag(token, fields);
  return sodium_memcmp(expected.data(), carried.data(), expected.size()) == 0;
}

}  // namespace roam::crypto
