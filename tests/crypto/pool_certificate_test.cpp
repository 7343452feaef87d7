// Pool membership certificates: what the pool key signs verifies, and every way a
// certificate can be wrong (forged, another pool's, another member's, expired, truncated,
// a future version) is refused.
#include "crypto/pool_certificate.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace {

using namespace roam::crypto;

TEST_CASE("pool certificate: admitted member verifies, round-trips through base64") {
  auto pool = PoolSigningKey::generate();
  auto member = IdentityKey::generate();
  auto certificate = pool.admit(member.public_key(), 0);
  CHECK(verify_certificate(certificate, member.public_key(), pool.public_key(), 1'000));
  CHECK(verify_certificate(certificate, member.public_key(), std::nullopt, 1'000));
  auto text = certificate_to_base64(certificate);
  auto parsed = certificate_from_base64("  " + text + "\n");
  REQUIRE(parsed);
  CHECK(*parsed == certificate);
  auto encoded = encode_certificate(certificate);
  CHECK(verify_certificate(std::span<const uint8_t>(encoded), member.public_key(), pool.public_key(), 1'000));
}

TEST_CASE("pool certificate: forged, foreign, misdirected, expired and malformed ones are refused") {
  auto pool = PoolSigningKey::generate();
  auto other_pool = PoolSigningKey::generate();
  auto member = IdentityKey::generate();
  auto stranger = IdentityKey::generate();
  auto certificate = pool.admit(member.public_key(), 5'000);

  CHECK(verify_certificate(certificate, member.public_key(), pool.public_key(), 5'000));
  CHECK(verify_certificate(certificate, member.public_key(), pool.public_key(), 5'001).error() ==
        CertificateError::expired);
  CHECK(verify_certificate(certificate, stranger.public_key(), pool.public_key(), 0).error() ==
        CertificateError::wrong_member);
  CHECK(verify_certificate(certificate, member.public_key(), other_pool.public_key(), 0).error() ==
        CertificateError::wrong_pool);

  // The stranger copies the member's certificate onto its own key: the signature breaks.
  auto forged = certificate;
  forged.member = stranger.public_key();
  CHECK(verify_certificate(forged, stranger.public_key(), pool.public_key(), 0).error() ==
        CertificateError::bad_signature);
  // Extending its own validity breaks it too.
  auto extended = certificate;
  extended.not_after = 0;
  CHECK(verify_certificate(extended, member.public_key(), pool.public_key(), 0).error() ==
        CertificateError::bad_signature);
  // Another pool signing under this pool's name.
  auto impostor = other_pool.admit(member.public_key(), 0);
  impostor.pool = pool.public_key();
  CHECK(verify_certificate(impostor, member.public_key(), pool.public_key(), 0).error() ==
        CertificateError::bad_signature);

  auto encoded = encode_certificate(certificate);
  CHECK(verify_certificate(std::span<const uint8_t>(encoded).first(100), member.public_key(), std::nullopt, 0)
            .error() == CertificateError::malformed);
  encoded[0] = 2;
  CHECK(verify_certificate(std::span<const uint8_t>(encoded), member.public_key(), std::nullopt, 0).error() ==
        CertificateError::malformed);
  CHECK_FALSE(certificate_from_base64("not base64 at all"));
  CHECK_FALSE(certificate_from_base64(to_base64(member.public_key())));
}

TEST_CASE("pool signing key: saved 0600, loads to the same key, never overwritten") {
  auto dir = std::filesystem::temp_directory_path() / ("roam-pool-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto path = (dir / "pool.key").string();
  auto pool = PoolSigningKey::generate();
  REQUIRE(pool.save(path));
  CHECK(pool.save(path).error() == KeyError::file_exists);
  auto loaded = PoolSigningKey::load(path);
  REQUIRE(loaded);
  CHECK(loaded->public_key() == pool.public_key());
  auto member = IdentityKey::generate();
  CHECK(verify_certificate(loaded->admit(member.public_key(), 0), member.public_key(), pool.public_key(), 0));

  // A server's own certificate must certify its own key.
  auto cert_path = (dir / "member.cert").string();
  std::ofstream(cert_path) << certificate_to_base64(pool.admit(member.public_key(), 0)) << "\n";
  CHECK(load_own_certificate(cert_path, member.public_key(), 0));
  auto other = IdentityKey::generate();
  auto wrong = load_own_certificate(cert_path, other.public_key(), 0);
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().find("not this server's --key") != std::string::npos);
  CHECK_FALSE(load_own_certificate((dir / "missing").string(), member.public_key(), 0));
  std::filesystem::remove_all(dir);
}

}  // namespace
