// Pool membership (DESIGN.md section 2, "pool"): the servers that may hand sessions to one
// another and that clients follow. A pool has an Ed25519 signing key held by its operator
// (offline; `roamctl pool genkey`); it admits a server by signing that server's static
// X25519 identity key (`roamctl pool admit`). The signature is the server's membership
// certificate: a server shows it in its handshakes (the control port, the client channel),
// an old server checks the target's before sending it anything, the target checks the old
// server's before importing, and a client checks the one an Address Change Message names
// before following it. A malicious member cannot mint members: only the pool key signs.
// Pure functions over bytes, plus the key file; any thread (after ensure_sodium()).
//
// Certificate (137 bytes, the text form is its base64):
//   u8 version (1) | pool public key (Ed25519, 32) | member key (X25519, 32)
//   | u64 not_after (Unix seconds, big-endian; 0: never expires) | signature (64)
// signature = Ed25519(pool secret, "roamstack pool member v1" | the 73 bytes before it).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "crypto/identity_key.hpp"
#include "crypto/sodium.hpp"

namespace roam::crypto {

using PoolPublicKey = std::array<uint8_t, 32>;
inline constexpr size_t pool_certificate_bytes = 1 + 32 + 32 + 8 + 64;
inline constexpr uint8_t pool_certificate_version = 1;

struct PoolCertificate {
  PoolPublicKey pool{};
  PublicKey member{};
  uint64_t not_after = 0;  // Unix seconds; 0: never
  std::array<uint8_t, 64> signature{};
  bool operator==(const PoolCertificate&) const = default;
};

enum class CertificateError : uint8_t {
  malformed,      // wrong length or version
  bad_signature,  // not signed by the pool key it names
  wrong_pool,     // signed by another pool than the one expected
  wrong_member,   // certifies another key than the one presented
  expired,
};
const char* certificate_error_name(CertificateError error);

std::array<uint8_t, pool_certificate_bytes> encode_certificate(const PoolCertificate& certificate);
std::optional<PoolCertificate> decode_certificate(std::span<const uint8_t> bytes);
std::string certificate_to_base64(const PoolCertificate& certificate);
std::optional<PoolCertificate> certificate_from_base64(std::string_view text);

// Checks the signature, that the certificate names `member` and (when given) `pool`, and
// that it has not expired at `now_s`.
Result<Ok, CertificateError> verify_certificate(const PoolCertificate& certificate, const PublicKey& member,
                                                const std::optional<PoolPublicKey>& pool, uint64_t now_s);
// The same, from bytes (a handshake payload, an ACM field).
Result<PoolCertificate, CertificateError> verify_certificate(std::span<const uint8_t> bytes, const PublicKey& member,
                                                             const std::optional<PoolPublicKey>& pool,
                                                             uint64_t now_s);

// A certificate of some member of `pool` (an ACM's target, whose key is learned from the
// certificate itself and checked later when that host authenticates).
Result<PoolCertificate, CertificateError> verify_member_of(std::span<const uint8_t> bytes, const PoolPublicKey& pool,
                                                           uint64_t now_s);

// The pool's signing key: a 32-byte Ed25519 seed in a 0600 file (base64), like an
// identity key file.
class PoolSigningKey {
 public:
  static PoolSigningKey generate();
  static Result<PoolSigningKey, KeyError> load(const std::string& path);
  Result<Ok, KeyError> save(const std::string& path) const;

  const PoolPublicKey& public_key() const { return public_; }
  PoolCertificate admit(const PublicKey& member, uint64_t not_after) const;

 private:
  PoolSigningKey() = default;
  void derive();

  SecretBytes<32> seed_;
  SecretBytes<64> secret_;  // libsodium's expanded form (seed | public key)
  PoolPublicKey public_{};
};

// A server's own membership, as it starts: its certificate file (base64, one line) must
// certify its identity key. Throws nothing: an error text.
Result<PoolCertificate, std::string> load_own_certificate(const std::string& path, const PublicKey& identity,
                                                          uint64_t now_s);

}  // namespace roam::crypto
