// The Noise Protocol Framework (revision 34), the two handshakes Roamstack's control
// channel uses: Noise_XX_25519_ChaChaPoly_BLAKE2b (mutual authentication, both static
// keys sent encrypted) and Noise_IK_25519_ChaChaPoly_BLAKE2b (the initiator already knows
// the responder's static key: one round trip). Built on libsodium primitives: X25519,
// ChaCha20-Poly1305 (IETF, 96-bit nonce = 4 zero bytes + 64-bit little-endian counter),
// BLAKE2b-512 and HMAC-BLAKE2b / HKDF as the specification defines them. Pure state
// machines over byte spans (no I/O). One handshake per object; any thread, not shared.
//
// Proven against the published test vectors (flynn/noise's vectors.txt, from Debian's
// golang-github-flynn-noise-dev) and against an independent implementation (Debian's
// python3-dissononce) in tests/crypto/.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "crypto/identity_key.hpp"
#include "crypto/sodium.hpp"
#include "base/result.hpp"

namespace roam::crypto {

inline constexpr size_t noise_max_message = 65535;
inline constexpr size_t noise_tag_bytes = 16;
inline constexpr size_t noise_hash_bytes = 64;

enum class NoisePattern : uint8_t { xx, ik };
enum class NoiseRole : uint8_t { initiator, responder };

enum class NoiseError : uint8_t {
  wrong_turn,        // write when it is the peer's turn to send, or the reverse
  message_too_long,  // above 65535 bytes
  truncated,         // shorter than the pattern's keys and tags
  decrypt_failed,    // authentication tag did not verify: forged, corrupted or wrong key
  bad_public_key,    // a DH gave the all-zero output (low-order point)
  handshake_done,    // the handshake is over: use the transport ciphers
  nonce_exhausted,   // 2^64 - 1 messages on one cipher
};
const char* noise_error_name(NoiseError error);

// One direction of a transport (or the handshake's current key).
class NoiseCipher {
 public:
  NoiseCipher() = default;
  explicit NoiseCipher(std::span<const uint8_t, 32> key);
  // InitializeKey(k): a new key in the same secret memory, nonce back to 0.
  void set_key(std::span<const uint8_t, 32> key);
  bool has_key() const { return has_key_; }
  uint64_t nonce() const { return nonce_; }
  // Appends ciphertext + tag to `out`.
  Result<Ok, NoiseError> encrypt(std::span<const uint8_t> ad, std::span<const uint8_t> plaintext,
                                 std::vector<uint8_t>& out);
  // Appends the plaintext to `out`; on failure `out` and the nonce are unchanged.
  Result<Ok, NoiseError> decrypt(std::span<const uint8_t> ad, std::span<const uint8_t> ciphertext,
                                 std::vector<uint8_t>& out);
  // Explicit-nonce transport (as WireGuard and DTLS do): the sender's counter travels with
  // the message, so the receiver decrypts under that nonce and leaves ordering and replay
  // to a ReplayWindow. The cipher's own nonce is not used or changed.
  Result<Ok, NoiseError> decrypt_with_nonce(uint64_t nonce, std::span<const uint8_t> ad,
                                            std::span<const uint8_t> ciphertext, std::vector<uint8_t>& out) const;

 private:
  SecretBytes<32> key_;
  bool has_key_ = false;
  uint64_t nonce_ = 0;
};

struct NoiseTransport {
  NoiseCipher send;
  NoiseCipher receive;
  std::array<uint8_t, noise_hash_bytes> handshake_hash{};  // channel binding
  PublicKey remote_static{};
};

class NoiseHandshake {
 public:
  // `remote_static` is required for the IK initiator (the responder's known key).
  NoiseHandshake(NoisePattern pattern, NoiseRole role, const IdentityKey& local_static,
                 std::span<const uint8_t> prologue, std::optional<PublicKey> remote_static = std::nullopt);
  NoiseHandshake(const NoiseHandshake&) = delete;
  NoiseHandshake& operator=(const NoiseHandshake&) = delete;

  // Tests only: use these bytes as the ephemeral private key instead of fresh randomness.
  void set_ephemeral_for_test(std::span<const uint8_t, 32> secret);

  bool my_turn() const;
  bool finished() const { return next_message_ == message_count(); }
  // Builds the next handshake message carrying `payload` (encrypted once a key exists).
  Result<std::vector<uint8_t>, NoiseError> write_message(std::span<const uint8_t> payload);
  // Consumes the peer's next handshake message; returns its payload. On failure the
  // handshake is dead (Noise has no recovery): start a new one.
  Result<std::vector<uint8_t>, NoiseError> read_message(std::span<const uint8_t> message);
  // The peer's static key, once a message carried it (or given, for IK initiators).
  std::optional<PublicKey> remote_static() const { return remote_static_; }
  // After finished(): the transport ciphers for this side, and the handshake hash.
  NoiseTransport split();

  const std::array<uint8_t, noise_hash_bytes>& handshake_hash() const { return h_; }

 private:
  size_t message_count() const;
  Result<Ok, NoiseError> mix_dh(const uint8_t* secret, const uint8_t* public_key);
  Result<Ok, NoiseError> mix_dh_token(uint8_t token);
  void mix_hash(std::span<const uint8_t> data);
  void mix_key(std::span<const uint8_t> input);
  Result<Ok, NoiseError> encrypt_and_hash(std::span<const uint8_t> plaintext, std::vector<uint8_t>& out);
  Result<Ok, NoiseError> decrypt_and_hash(std::span<const uint8_t> ciphertext, std::vector<uint8_t>& out);

  NoisePattern pattern_;
  NoiseRole role_;
  const IdentityKey& local_static_;
  SecretBytes<32> ephemeral_;
  PublicKey ephemeral_public_{};
  bool ephemeral_fixed_ = false;
  std::optional<PublicKey> remote_static_;
  PublicKey remote_ephemeral_{};
  std::array<uint8_t, noise_hash_bytes> h_{};
  SecretBytes<noise_hash_bytes> ck_;
  NoiseCipher cipher_;
  size_t next_message_ = 0;
  bool failed_ = false;
};

}  // namespace roam::crypto
