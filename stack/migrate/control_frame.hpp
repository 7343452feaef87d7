// Control frames between servers and from roamctl: the framing of the control port's
// byte stream, which travels inside its Noise stream (crypto/noise_stream.hpp, FrameStream;
// docs/PROTOCOL.md section 4). Pure: no I/O. Any thread.
//
//   u32 payload length (big-endian) | u8 type | payload
//
// Payloads:
//   migrate_request  text "to=HOST:PORT[ count=N]"                  roamctl -> old server
//   session          version 2: u8 0 | u8 2 | u8 kind length | kind | u8 leg count N
//                    | N x (u8 role | u8 token length | token | u32 length | snapshot)
//                                                                   old server -> new server
//   session_result   u8 ok | text (ok: the new server's address; else the reason)
//   reply            text, one line                                 server -> roamctl
//   status_request   empty                                          roamctl -> server
//   address_request  empty, or feature words ("precopy"); answered by a reply
//                    "address IPV4[ IPV6][ FEATURE ...]" (the target's carrier addresses,
//                    the features asked that it accepts: address_answer.hpp)
//                                                                   old server -> new server
//   ratify           stack/migrate/ratify.hpp; answered by a reply "ok ratified N" or
//                    "error ..."                                    old server -> next proxy
//   inform_request   empty, or text "to=HOST:PORT" (the next proxy's control port);
//                    answered by a reply                            roamctl -> server
//   precopy          u64 connection id | u8 stream (1 send, 2 receive) | u32 first seq
//                    | bytes (stack/migrate/precopy.hpp)           old server -> new server
//   precopy_sync     empty; answered by a reply "precopied BYTES" (bytes held for this
//                    connection) or "error ..."                     old server -> new server
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/ip_address.hpp"
#include "base/result.hpp"

namespace roam::migrate {

enum class FrameType : uint8_t {
  migrate_request = 1,
  session = 2,
  session_result = 3,
  reply = 4,
  status_request = 5,
  address_request = 6,
  ratify = 7,          // old server -> next proxy: whitelist these clients (migrate/ratify.hpp)
  inform_request = 8,  // roamctl -> server: inform now (text "" or "to=HOST:PORT")
  precopy = 9,         // old server -> new server: queued stream bytes ahead of a freeze (precopy.hpp)
  precopy_sync = 10,   // old server -> new server: empty; answered by a reply "precopied BYTES"
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
// the caller appends the payload, finish_frame fills in its length. A frame appended
// after others (its header written by append_frame with no payload) is finished with the
// offset its header starts at.
inline constexpr size_t frame_header_bytes = 5;  // u32 length | u8 type
void begin_frame(FrameType type, std::vector<uint8_t>& out);
void finish_frame(std::vector<uint8_t>& out, size_t header_at = 0);

// Splits a byte stream into frames. Feed bytes as they arrive, then call next() until it
// returns an empty optional. After an error the stream is unusable (close it).
class FrameReader {
 public:
  void feed(std::span<const uint8_t> bytes);
  // The same, taking the bytes over instead of copying them when nothing is buffered (a
  // decrypted record: a session frame's tens of KB are not copied once more).
  void feed(std::vector<uint8_t>&& bytes);
  Result<std::optional<Frame>, FrameError> next();

 private:
  std::vector<uint8_t> buffer_;
  size_t consumed_ = 0;
};

// session payload (docs/PROTOCOL.md 4.3), version 2: one session with all its legs.
//   u8 0 | u8 version (2) | u8 kind length K (1..255) | K bytes kind | u8 leg count N (1..8)
//   N times: u8 role | u8 token length (0; client legs: 0 or 32) | token
//            | u32 snapshot length L | L bytes snapshot (stack/wire/connection_snapshot)
// The leading 0 keeps a version-1 receiver (whose first byte was a kind length >= 1) from
// misreading it: it refuses the frame as malformed. Nothing may follow the last leg.
using HandoverToken = std::array<uint8_t, 32>;  // crypto::HandoverToken

inline constexpr uint8_t session_payload_version = 2;
inline constexpr size_t max_session_legs = 8;

// Which end of a connection a session's leg is, so the new host knows who must be told
// of the move (DESIGN.md section 2, the proxy; section 4, "A server moves" / "A client
// moves").
enum class LegRole : uint8_t {
  client = 1,  // accepted from a client: the old host tells the client (ACM, NAT handover)
  origin = 2,  // opened by this host to an origin server: the new host tells the origin
};
const char* leg_role_name(LegRole role);

enum class SessionPayloadError : uint8_t {
  truncated,        // a field or a snapshot runs past the end
  unknown_version,  // not version 2 (a version-1 payload starts with a kind length >= 1)
  bad_field,        // kind length 0, leg count 0 or above 8, unknown role, bad token length
  trailing_bytes,   // bytes after the last leg
};
const char* session_payload_error_name(SessionPayloadError error);

// Builds a payload in place (the old server appends each snapshot straight into the
// frame): the header, then per leg begin_session_leg, the snapshot, finish_session_leg.
void append_session_header(std::string_view kind, size_t leg_count, std::vector<uint8_t>& out);
// Writes the leg's header with a zero snapshot length; returns where that length sits.
size_t begin_session_leg(LegRole role, const std::optional<HandoverToken>& token, std::vector<uint8_t>& out);
// Sets the snapshot length of the leg begun at `length_at` to the bytes appended since.
void finish_session_leg(size_t length_at, std::vector<uint8_t>& out);

struct SessionLegPayload {
  LegRole role = LegRole::client;
  std::optional<HandoverToken> handover_token;  // only on client legs
  std::span<const uint8_t> snapshot;            // points into the frame's payload
};
struct SessionPayload {
  std::string kind;
  std::vector<SessionLegPayload> legs;  // 1..max_session_legs, in the session's leg order
};
std::vector<uint8_t> encode_session_payload(const SessionPayload& payload);
Result<SessionPayload, SessionPayloadError> decode_session_payload(std::span<const uint8_t> payload);

// session_result payload.
std::vector<uint8_t> encode_session_result(bool ok, std::string_view text);
struct SessionResult {
  bool ok = false;
  std::string text;
};
std::optional<SessionResult> decode_session_result(std::span<const uint8_t> payload);

// "address IPV4[ IPV6][ FEATURE ...]" (a target's answer to address_request) -> its
// addresses; empty when the text is anything else (address_answer.hpp has the features).
std::vector<IpAddress> parse_address_answer(const std::string& text);

}  // namespace roam::migrate
