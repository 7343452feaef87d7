// IdentityKey: a host's (or a server pool's) static X25519 key pair, and its text and file
// forms: base64 of the 32 raw bytes, like WireGuard's `wg genkey | wg pubkey`. Key files
// hold the private key's base64 line and must not be readable by group or others (0600 or
// stricter); looser files are refused, as ssh does. Any thread (after ensure_sodium()).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "crypto/sodium.hpp"
#include "base/result.hpp"

namespace roam::crypto {

inline constexpr size_t key_bytes = 32;
using PublicKey = std::array<uint8_t, key_bytes>;

enum class KeyError : uint8_t {
  bad_base64,       // not base64, or not exactly 32 bytes once decoded
  file_unreadable,  // missing, not a regular file, or an I/O error
  file_too_open,    // readable or writable by group or others
  file_exists,      // refusing to overwrite an existing key file
  file_unwritable,
};
const char* key_error_name(KeyError error);

class IdentityKey {
 public:
  static IdentityKey generate();
  // From the base64 private key; surrounding whitespace is ignored.
  static Result<IdentityKey, KeyError> from_base64(std::string_view text);
  // Reads a key file, refusing one that group or others may read or write.
  static Result<IdentityKey, KeyError> load(const std::string& path);
  // Writes a new key file with mode 0600; never overwrites.
  Result<Ok, KeyError> save(const std::string& path) const;

  const PublicKey& public_key() const { return public_; }
  const SecretBytes<key_bytes>& secret_key() const { return secret_; }
  // The private key as base64 (for `roamctl genkey`: the user asked for it).
  std::string secret_base64() const;

 private:
  IdentityKey() = default;
  void derive_public();

  SecretBytes<key_bytes> secret_;
  PublicKey public_{};
};

std::string to_base64(std::span<const uint8_t> bytes);

// A file holding one 32-byte secret as a base64 line (an identity key, a pool signing
// key), refused when group or others may read or write it; written 0600, never over an
// existing file.
Result<SecretBytes<key_bytes>, KeyError> load_secret_file(const std::string& path);
Result<Ok, KeyError> save_secret_file(const std::string& path, std::span<const uint8_t, key_bytes> secret);
// Exactly 32 bytes of base64 (standard alphabet, padded), whitespace around it ignored.
std::optional<PublicKey> public_key_from_base64(std::string_view text);

}  // namespace roam::crypto
