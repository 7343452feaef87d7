// ControlChannel: one end of the control channel between two hosts (DESIGN.md section 5,
// seed 003 section 2), as a pure state machine over the bytes of the TCP connection that
// carries it: no I/O, no clock, no logging. The caller feeds what it reads, sends what the
// channel gives it, and acts on the events. Loop thread only; one object per connection.
//
// Stream layout: u16 length (big-endian) | body, repeated. Bodies:
//   handshake  Noise handshake messages (XX or IK, crypto/noise.hpp). Each encrypted
//              handshake payload is the sender's HELLO; XX's first message carries none.
//   transport  u64 counter | ChaCha20-Poly1305(message) | 16-byte tag, with the counter as
//              the AEAD nonce and as associated data. The receiver decrypts under the
//              counter the frame names, and only then asks its ReplayWindow: a forged
//              frame cannot move the window, a replayed or too-old one is refused.
// This state machine reports a bad frame after the handshake (forged, replayed,
// undecodable) and stays in step (the length prefix delimits frames). What to do is the
// owner's policy: ChannelConnection resets the connection on a forged or replayed frame
// (as TLS does on a bad record MAC; the peer opens a new channel) and drops an authentic
// message it cannot decode. A failed handshake or an impossible length is fatal
// (failed()): close the connection. docs/PROTOCOL.md states the behaviour on the wire.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "crypto/identity_key.hpp"
#include "crypto/noise.hpp"
#include "crypto/replay_window.hpp"
#include "stack/control/messages.hpp"
#include "base/result.hpp"

namespace roam::control {

inline constexpr size_t channel_length_bytes = 2;
inline constexpr size_t channel_counter_bytes = 8;
inline constexpr size_t max_channel_body = 65535;
// The prologue binds both ends to this protocol and version: a peer speaking anything else
// fails the handshake instead of misreading it.
inline constexpr char channel_prologue[] = "roamstack control channel v1";

enum class ChannelError : uint8_t {
  bad_length,        // fatal: a zero-length body (the stream is out of step)
  handshake_failed,  // fatal: a handshake message did not verify, or came out of turn
  bad_hello,         // fatal: a handshake payload that is not a HELLO of our version
  forged,            // dropped: did not authenticate (forged, corrupted, wrong key, truncated)
  replayed,          // dropped: a counter already accepted, or older than the window
  bad_message,       // dropped: authenticated but not a message we can decode
  not_established,   // seal() before the handshake finished
};
const char* channel_error_name(ChannelError error);
bool channel_error_is_fatal(ChannelError error);

struct ChannelCounters {
  uint64_t frames_in = 0;
  uint64_t messages_in = 0;
  uint64_t messages_out = 0;
  uint64_t forged = 0;
  uint64_t replayed = 0;
  uint64_t bad_messages = 0;
};

class ControlChannel {
 public:
  // `remote_static`: the responder's key, required when an IK initiator.
  ControlChannel(crypto::NoisePattern pattern, crypto::NoiseRole role, const crypto::IdentityKey& local, Hello hello,
                 std::optional<crypto::PublicKey> remote_static = std::nullopt);
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  // Initiator: the first handshake frame, to send at once. Responder: nothing.
  std::vector<uint8_t> start();
  // Bytes read from the connection, in order.
  void feed(std::span<const uint8_t> bytes);

  // The next thing the fed bytes hold: nullopt when more bytes are needed; `established`
  // once when the handshake completes; then messages. Handshake replies are appended to
  // `to_send`. An error names a frame that was dropped (the channel goes on) unless
  // failed() is true.
  struct Event {
    bool established = false;  // else: `message`
    Message message;
  };
  Result<std::optional<Event>, ChannelError> next(std::vector<uint8_t>& to_send);

  // The framed, encrypted bytes of one message, to send.
  Result<std::vector<uint8_t>, ChannelError> seal(const Message& message);

  bool established() const { return transport_.has_value(); }
  bool failed() const { return failed_; }
  // What this end said in its HELLO, and which end of the handshake it is.
  const Hello& hello() const { return hello_; }
  crypto::NoiseRole role() const { return role_; }
  // After established(): who is at the other end.
  const Hello& peer_hello() const { return peer_hello_; }
  const crypto::PublicKey& remote_static() const { return transport_->remote_static; }
  // Binds keys derived later (per-segment MACs) to this very session.
  const std::array<uint8_t, crypto::noise_hash_bytes>& handshake_hash() const { return transport_->handshake_hash; }
  const ChannelCounters& counters() const { return counters_; }

 private:
  Result<Ok, ChannelError> write_handshake(std::vector<uint8_t>& to_send);
  Result<std::optional<Event>, ChannelError> read_handshake(std::span<const uint8_t> body,
                                                            std::vector<uint8_t>& to_send);
  Result<std::optional<Event>, ChannelError> read_transport(std::span<const uint8_t> body);
  Result<std::optional<Event>, ChannelError> fail(ChannelError error);

  crypto::NoisePattern pattern_;
  crypto::NoiseRole role_;
  Hello hello_;
  Hello peer_hello_;
  bool have_peer_hello_ = false;
  std::optional<crypto::NoiseHandshake> handshake_;
  std::optional<crypto::NoiseTransport> transport_;
  crypto::ReplayWindow replay_;
  std::vector<uint8_t> buffer_;
  size_t consumed_ = 0;
  bool failed_ = false;
  bool started_ = false;
  int handshake_writes_ = 0;
  ChannelCounters counters_;
};

}  // namespace roam::control
