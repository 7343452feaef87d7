#include "crypto/owner_proof.hpp"

#include <cstring>

namespace roam::crypto {

namespace {
constexpr char tag_label[] = "roamstack owner tag v1";
constexpr char key_label[] = "roamstack owner key v1";
constexpr char mac_label[] = "roamstack owner proof v1";
}  // namespace

OwnerProofKey::OwnerProofKey(std::span<const uint8_t, 64> handshake_hash) {
  ensure_sodium();
  uint8_t full[crypto_generichash_BYTES_MIN];
  crypto_generichash(full, sizeof full, reinterpret_cast<const uint8_t*>(tag_label), sizeof(tag_label) - 1,
                     handshake_hash.data(), handshake_hash.size());
  std::memcpy(tag_.data(), full, tag_.size());
  crypto_generichash(key_.data(), key_bytes, reinterpret_cast<const uint8_t*>(key_label), sizeof(key_label) - 1,
                     handshake_hash.data(), handshake_hash.size());
}

OwnerProofMac OwnerProofKey::mac(uint32_t client_isn, uint16_t server_port) const {
  uint8_t message[sizeof(mac_label) - 1 + 4 + 2];
  size_t at = sizeof(mac_label) - 1;
  std::memcpy(message, mac_label, at);
  for (int i = 0; i < 4; ++i) message[at++] = static_cast<uint8_t>(client_isn >> (24 - 8 * i));
  message[at++] = static_cast<uint8_t>(server_port >> 8);
  message[at++] = static_cast<uint8_t>(server_port);
  uint8_t full[crypto_generichash_BYTES_MIN];
  crypto_generichash(full, sizeof full, message, sizeof message, key_.data(), key_bytes);
  OwnerProofMac out;
  std::memcpy(out.data(), full, out.size());
  return out;
}

bool OwnerProofKey::verify(uint32_t client_isn, uint16_t server_port,
                           std::span<const uint8_t, owner_proof_mac_bytes> carried) const {
  auto expected = mac(client_isn, server_port);
  return sodium_memcmp(expected.data(), carried.data(), expected.size()) == 0;
}

}  // namespace roam::crypto
