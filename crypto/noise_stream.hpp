// NoiseStream: an authenticated, encrypted byte stream over a reliable transport (a kernel
// TCP connection): the control port, where roamctl talks to a server and servers hand
// sessions to each other (docs/PROTOCOL.md, "Control port"). Noise_XX_25519_ChaChaPoly_
// BLAKE2b with both static keys, then records with Noise's implicit nonces: the transport
// below is reliable and ordered, so any record that does not decrypt means the stream was
// written into or is out of step, and the stream is dead (failed()). No I/O, no clock: the
// caller feeds what it reads and sends what it is given. One object per connection; any
// thread, not shared.
//
// Wire: u16 length (big-endian) | body, repeated.
//   handshake  the three XX messages. The responder's payload (message 2) and the
//              initiator's (message 3) are each side's credential: empty, or a pool
//              membership certificate (crypto/pool_certificate.hpp). Message 1: none.
//   transport  ChaCha20-Poly1305 of 1..65519 plaintext bytes, 16-byte tag; nonce = the
//              record's index in its direction (0, 1, ...), empty associated data.
// The plaintext records concatenate into one byte stream (their boundaries mean nothing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "crypto/identity_key.hpp"
#include "crypto/noise.hpp"

namespace roam::crypto {

inline constexpr char noise_stream_prologue[] = "roamstack control port v1";
inline constexpr size_t noise_stream_max_plaintext = noise_max_message - noise_tag_bytes;
inline constexpr size_t noise_stream_max_payload = 1024;  // a handshake credential

enum class NoiseStreamError : uint8_t {
  handshake_failed,  // a handshake message did not verify or came out of turn
  bad_payload,       // a handshake payload larger than any credential
  forged,            // a record did not decrypt: written into, or out of step
  bad_length,        // a zero-length body
  not_established,   // seal() before the handshake finished
};
const char* noise_stream_error_name(NoiseStreamError error);

class NoiseStream {
 public:
  // `credential`: this side's handshake payload (at most noise_stream_max_payload bytes).
  NoiseStream(NoiseRole role, const IdentityKey& local, std::vector<uint8_t> credential);
  NoiseStream(const NoiseStream&) = delete;
  NoiseStream& operator=(const NoiseStream&) = delete;

  // Initiator: the first handshake message, to send at once. Responder: nothing.
  std::vector<uint8_t> start();
  // Bytes read from the transport, in order. Handshake replies are appended to `to_send`,
  // decrypted stream bytes to `plaintext`. An error is fatal: close the transport.
  Result<Ok, NoiseStreamError> feed(std::span<const uint8_t> bytes, std::vector<uint8_t>& to_send,
                                    std::vector<uint8_t>& plaintext);
  // Appends the records carrying `plaintext` (split as needed) to `out`.
  Result<Ok, NoiseStreamError> seal(std::span<const uint8_t> plaintext, std::vector<uint8_t>& out);

  bool established() const { return transport_.has_value(); }
  bool failed() const { return failed_; }
  // After established(): the peer's static key and its handshake payload.
  const PublicKey& remote_static() const { return transport_->remote_static; }
  const std::vector<uint8_t>& peer_credential() const { return peer_credential_; }

 private:
  Result<Ok, NoiseStreamError> write_handshake(std::vector<uint8_t>& to_send);
  Result<Ok, NoiseStreamError> read_body(std::span<const uint8_t> body, std::vector<uint8_t>& to_send,
                                         std::vector<uint8_t>& plaintext);
  Result<Ok, NoiseStreamError> fail(NoiseStreamError error);

  NoiseRole role_;
  std::vector<uint8_t> credential_;
  std::vector<uint8_t> peer_credential_;
  std::optional<NoiseHandshake> handshake_;
  std::optional<NoiseTransport> transport_;
  std::vector<uint8_t> buffer_;
  size_t consumed_ = 0;
  bool failed_ = false;
  bool started_ = false;
  bool wrote_first_ = false;  // the initiator's clear first message is written
};

}  // namespace roam::crypto
