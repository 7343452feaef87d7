#include "crypto/pool_certificate.hpp"

#include <cstring>
#include <fstream>
#include <sstream>

namespace roam::crypto {

namespace {

constexpr char signing_context[] = "roamstack pool member v1";
constexpr size_t signed_bytes = pool_certificate_bytes - 64;

// The bytes the signature covers: the context string, then the certificate up to the
// signature.
constexpr size_t context_bytes = sizeof signing_context - 1;
std::array<uint8_t, context_bytes + signed_bytes> signed_message(
    const std::array<uint8_t, pool_certificate_bytes>& encoded) {
  std::array<uint8_t, context_bytes + signed_bytes> message{};
  std::memcpy(message.data(), signing_context, context_bytes);
  std::memcpy(message.data() + context_bytes, encoded.data(), signed_bytes);
  return message;
}

std::string_view trim(std::string_view text) {
  const char* space = " \t\r\n";
  size_t begin = text.find_first_not_of(space);
  if (begin == std::string_view::npos) return {};
  return text.substr(begin, text.find_last_not_of(space) - begin + 1);
}

}  // namespace

const char* certificate_error_name(CertificateError error) {
  switch (error) {
    case CertificateError::malformed:
      return "malformed pool certificate";
    case CertificateError::bad_signature:
      return "pool certificate signature does not verify";
    case CertificateError::wrong_pool:
      return "certificate of another pool";
    case CertificateError::wrong_member:
      return "certificate of another key";
    case CertificateError::expired:
      return "pool certificate expired";
  }
  return "unknown certificate error";
}

std::array<uint8_t, pool_certificate_bytes> encode_certificate(const PoolCertificate& certificate) {
  std::array<uint8_t, pool_certificate_bytes> out{};
  size_t at = 0;
  out[at++] = pool_certificate_version;
  std::memcpy(&out[at], certificate.pool.data(), 32);
  at += 32;
  std::memcpy(&out[at], certificate.member.data(), 32);
  at += 32;
  for (int shift = 56; shift >= 0; shift -= 8) out[at++] = static_cast<uint8_t>(certificate.not_after >> shift);
  std::memcpy(&out[at], certificate.signature.data(), 64);
  return out;
}

std::optional<PoolCertificate> decode_certificate(std::span<const uint8_t> bytes) {
  if (bytes.size() != pool_certificate_bytes || bytes[0] != pool_certificate_version) return std::nullopt;
  PoolCertificate certificate;
  size_t at = 1;
  std::memcpy(certificate.pool.data(), &bytes[at], 32);
  at += 32;
  std::memcpy(certificate.member.data(), &bytes[at], 32);
  at += 32;
  for (int i = 0; i < 8; ++i) certificate.not_after = certificate.not_after << 8 | bytes[at++];
  std::memcpy(certificate.signature.data(), &bytes[at], 64);
  return certificate;
}

std::string certificate_to_base64(const PoolCertificate& certificate) {
  auto encoded = encode_certificate(certificate);
  return to_base64(encoded);
}

std::optional<PoolCertificate> certificate_from_base64(std::string_view text) {
  text = trim(text);
  std::array<uint8_t, pool_certificate_bytes + 1> bytes{};
  size_t decoded = 0;
  const char* end = nullptr;
  if (sodium_base642bin(bytes.data(), bytes.size(), text.data(), text.size(), nullptr, &decoded, &end,
                        sodium_base64_VARIANT_ORIGINAL) != 0 ||
      end != text.data() + text.size())
    return std::nullopt;
  return decode_certificate(std::span<const uint8_t>(bytes.data(), decoded));
}

Result<Ok, CertificateError> verify_certificate(const PoolCertificate& certificate, const PublicKey& member,
                                                const std::optional<PoolPublicKey>& pool, uint64_t now_s) {
  ensure_sodium();
  if (pool && *pool != certificate.pool) return unexpected(CertificateError::wrong_pool);
  if (certificate.member != member) return unexpected(CertificateError::wrong_member);
  auto message = signed_message(encode_certificate(certificate));
  if (crypto_sign_verify_detached(certificate.signature.data(), message.data(), message.size(),
                                  certificate.pool.data()) != 0)
    return unexpected(CertificateError::bad_signature);
  if (certificate.not_after != 0 && now_s > certificate.not_after) return unexpected(CertificateError::expired);
  return Ok{};
}

Result<PoolCertificate, CertificateError> verify_certificate(std::span<const uint8_t> bytes, const PublicKey& member,
                                                             const std::optional<PoolPublicKey>& pool,
                                                             uint64_t now_s) {
  auto certificate = decode_certificate(bytes);
  if (!certificate) return unexpected(CertificateError::malformed);
  auto verified = verify_certificate(*certificate, member, pool, now_s);
  if (!verified) return unexpected(verified.error());
  return *certificate;
}

Result<PoolCertificate, CertificateError> verify_member_of(std::span<const uint8_t> bytes, const PoolPublicKey& pool,
                                                           uint64_t now_s) {
  auto certificate = decode_certificate(bytes);
  if (!certificate) return unexpected(CertificateError::malformed);
  return verify_certificate(bytes, certificate->member, pool, now_s);
}

void PoolSigningKey::derive() {
  crypto_sign_seed_keypair(public_.data(), secret_.data(), seed_.data());
}

PoolSigningKey PoolSigningKey::generate() {
  ensure_sodium();
  PoolSigningKey key;
  randombytes_buf(key.seed_.data(), key.seed_.size());
  key.derive();
  return key;
}

Result<PoolSigningKey, KeyError> PoolSigningKey::load(const std::string& path) {
  auto seed = load_secret_file(path);
  if (!seed) return unexpected(seed.error());
  PoolSigningKey key;
  key.seed_ = std::move(*seed);
  key.derive();
  return key;
}

Result<Ok, KeyError> PoolSigningKey::save(const std::string& path) const {
  return save_secret_file(path, seed_.span());
}

PoolCertificate PoolSigningKey::admit(const PublicKey& member, uint64_t not_after) const {
  PoolCertificate certificate;
  certificate.pool = public_;
  certificate.member = member;
  certificate.not_after = not_after;
  auto message = signed_message(encode_certificate(certificate));
  crypto_sign_detached(certificate.signature.data(), nullptr, message.data(), message.size(), secret_.data());
  return certificate;
}

Result<PoolCertificate, std::string> load_own_certificate(const std::string& path, const PublicKey& identity,
                                                          uint64_t now_s) {
  std::ifstream file(path);
  if (!file) return unexpected("cannot read the pool certificate " + path);
  std::stringstream text;
  text << file.rdbuf();
  auto certificate = certificate_from_base64(text.str());
  if (!certificate) return unexpected(path + ": not a pool certificate (base64 of 137 bytes)");
  auto verified = verify_certificate(*certificate, identity, std::nullopt, now_s);
  if (!verified)
    return unexpected(path + ": " + certificate_error_name(verified.error()) +
                      (verified.error() == CertificateError::wrong_member ? " (not this server's --key)" : ""));
  return *certificate;
}

}  // namespace roam::crypto
