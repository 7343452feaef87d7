// Control frames between servers and from roamctl: the framing of the control port's
// byte stream, which travels inside its Noise stream (crypto/noise_stream.hpp, FrameStream;
// docs/PROTOCOL.md section 4). Pure: no I/O. Any thread.
//
//   u32 payload length (big-endian) | u8 type | payload
//
// Payloads:
//   migrate_request  text "to=HOST:PORT[ count=N]"                  roamctl -> old server
//   session          u8 kind length | kind | u8 token length (0 or 32) | handover token
//                    | snapshot encoding                            old server -> new server
//   session_result   u8 ok | text (ok: the new server's address; else the reason)
//   reply            text, one line                                 server -> roamctl
//   status_request   empty                                          roamctl -> server
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace roam::migrate {

enum class FrameType : uint8_t {
  migrate_request = 1,
  session = 2,
  session_result = 3,
  reply = 4,
  status_request = 5,
};

// A snapshot's queues are bounded (wire::snapshot_max_queue_bytes); a frame never needs
// more than this.
inline constexpr size_t max_frame_payload = 160u << 20;

struct Frame {
  FrameType type;
  std::vector<uint8_t> payload;
};

enum class FrameError : uint8_t { unknown_type, oversized };
const char* frame_error_name(FrameError error);

void append_frame(FrameType type, std::span<const uint8_t> payload, std::vector<uint8_t>& out);
void append_frame(FrameType type, std::string_view text, std::vector<uint8_t>& out);

// Builds a frame in place (no copy of a large payload): begin_frame writes the header,
// the caller appends the payload, finish_frame fills in its length.
void begin_frame(FrameType type, std::vector<uint8_t>& out);
void finish_frame(std::vector<uint8_t>& out);

// Splits a byte stream into frames. Feed bytes as they arrive, then call next() until it
// returns an empty optional. After an error the stream is unusable (close it).
class FrameReader {
 public:
  void feed(std::span<const uint8_t> bytes);
  Result<std::optional<Frame>, FrameError> next();

 private:
  std::vector<uint8_t> buffer_;
  size_t consumed_ = 0;
};

// session payload: kind, the NAT handover token for the connection (none: the old server
// does not use the handover), snapshot bytes.
using HandoverToken = std::array<uint8_t, 32>;  // crypto::HandoverToken
// Appends everything before the snapshot (the old server appends the snapshot in place).
void append_session_header(std::string_view kind, const std::optional<HandoverToken>& token, std::vector<uint8_t>& out);
std::vector<uint8_t> encode_session_payload(std::string_view kind, const std::optional<HandoverToken>& token,
                                            std::span<const uint8_t> snapshot);
struct SessionPayload {
  std::string kind;
  std::optional<HandoverToken> handover_token;
  std::span<const uint8_t> snapshot;  // points into the frame's payload
};
std::optional<SessionPayload> decode_session_payload(std::span<const uint8_t> payload);

// session_result payload.
std::vector<uint8_t> encode_session_result(bool ok, std::string_view text);
struct SessionResult {
  bool ok = false;
  std::string text;
};
std::optional<SessionResult> decode_session_result(std::span<const uint8_t> payload);

}  // namespace roam::migrate
