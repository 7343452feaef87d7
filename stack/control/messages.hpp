// Control-channel messages (DESIGN.md section 5; seed 003 section 2.1 and Fig. 2): HELLO,
// ACM (Address Change Message), ACK and ERROR, as pure encode/decode functions. They
// travel inside the channel's AEAD frames (crypto/noise.hpp, crypto/replay_window.hpp),
// which authenticate and encrypt them; the ACM's own sequence number, nonce and issue
// time let the receiver refuse replays and stale moves on top of that. Any thread.
//
// Layout (big-endian): u8 type | body
//   HELLO  u16 version | u8 id length | host id | u32 capabilities
//          | u8 credential length | credential (a server's pool membership certificate,
//                                                crypto/pool_certificate.hpp; 0: none)
//   ACM    u64 sequence | 16-byte nonce | u64 issued_at_ms (Unix) | u8 scope
//          | u8 ip version | old address | new address | u16 old port | u16 new port
//          | u16 count | count x u64 connection id      (scope connections: count >= 1;
//                                                        scope global, transfer: count 0)
//          | u8 token length (0 or 32) | handover token (the NAT handover's key for
//                                                        these connections; 0: none)
//          | u8 credential length | the target server's pool membership certificate
//                                   (the client follows only toward a member of the
//                                    pool its server belongs to; 0: none)
//   ACK    u64 sequence | u8 status (0 applied, 1 refused, 2 rebound: a peer took a
//          client's ACM and already points the connections at its new address)
//   ERROR  u16 code | u8 text length | text
//   REGISTER u16 count | count x u64 connection id   (count >= 1, ids non-zero)
//   LINK_KEY u8 ip version | inner address | 32-byte link key   (server to client, only
//            to a client whose HELLO offered capability_link_rebind; PROTOCOL.md 3.8)
//   ROAM_UPDATE (type 9) items | issued_at_ms | items...   (stack/control/roam_update.hpp)
//   CHECKPOINT (type 10) u16 length | sealed checkpoint     (server to client; opaque to the
//            client except its header, stack/migrate/checkpoint.hpp; PROTOCOL.md 14)
//   RESUME (type 11) u64 connection id | u32 rcv_nxt | u32 snd_una | u32 snd_nxt
//            | u16 length | sealed checkpoint             (client to the next server)
//   RESUMED (type 12) u64 connection id | u64 generation | u8 status | u8 reason
//            | u8 token length (0 or 32; 0 when refused) | handover token (the NAT
//              handover's key for the rebuilt connection, as in an ACM; 0: none)
//
// REGISTER is how the client names the connections this channel speaks for: each id was
// agreed by both ends when the connection was set up (stack/connection_id.hpp), so it
// still names the connection after a NAT rewrote the client's port.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "base/ip_address.hpp"
#include "base/result.hpp"
#include "stack/control/roam_update.hpp"

namespace roam::control {

inline constexpr uint16_t protocol_version = 2;  // 2: credentials in HELLO and ACM
inline constexpr size_t max_connection_ids = 4096;  // a bigger move sends several ACMs
inline constexpr size_t max_host_id = 64;
inline constexpr size_t max_error_text = 255;
inline constexpr size_t handover_token_bytes = 32;  // crypto::handover_token_bytes

enum class MessageType : uint8_t { hello = 1, acm = 2, ack = 3, error = 4, register_connections = 5, link_key = 6,
                                  roam_update = 9, checkpoint = 10, resume = 11, resumed = 12 };

struct Hello {
  uint16_t version = protocol_version;
  std::string host_id;
  uint32_t capabilities = 0;
  std::vector<uint8_t> credential;  // at most 255 bytes
  bool operator==(const Hello&) const = default;
};

// Which connections an ACM moves: the listed ids, or every connection between the two
// hosts that uses the old endpoint (a whole server moving), or none: a transfer
// notification (seed 004's Informer) says only that the old endpoint is under attack and
// that new connections, and connections still opening, go to the new endpoint (count 0,
// no token; the established ones move with ACMs of their own).
enum class AcmScope : uint8_t { connections = 1, global = 2, transfer = 3 };

struct AddressChange {
  uint64_t sequence = 0;
  std::array<uint8_t, 16> nonce{};
  uint64_t issued_at_ms = 0;
  AcmScope scope = AcmScope::connections;
  IpAddress old_address;
  IpAddress new_address;
  uint16_t old_port = 0;  // global scope: 0 means every port
  uint16_t new_port = 0;  // 0: unchanged
  std::vector<uint64_t> connection_ids;
  // The key of the synthetic handshake the client sends the new server (absent: the old
  // server does not use the handover; crypto/handover_mac.hpp).
  std::optional<std::array<uint8_t, handover_token_bytes>> handover_token;
  // The target's pool membership certificate (at most 255 bytes; empty: none).
  std::vector<uint8_t> target_credential;
  bool operator==(const AddressChange&) const = default;
};

// `rebound` answers only an ACM from a client (seed 003, "a client moves") whose new
// address is where its channel comes from: no NAT between, no handover needed.
enum class AckStatus : uint8_t { applied = 0, refused = 1, rebound = 2 };

// ERROR codes.
inline constexpr uint16_t error_unexpected_message = 1;   // a message the receiver never takes
inline constexpr uint16_t error_not_your_connection = 2;  // a REGISTER for another host's connection
inline constexpr uint16_t error_no_roam_update = 3;       // a pool member has no schedule to give (13.4)

struct Ack {
  uint64_t sequence = 0;
  AckStatus status = AckStatus::applied;
  bool operator==(const Ack&) const = default;
};

struct ErrorMessage {
  uint16_t code = 0;
  std::string text;
  bool operator==(const ErrorMessage&) const = default;
};

struct RegisterConnections {
  std::vector<uint64_t> connection_ids;
  bool operator==(const RegisterConnections&) const = default;
};

// HELLO capability bit: this client can send link rebinds (tun/link_rebind.hpp) on a UDP
// link, so a server whose link roams (--udp-roam) gives it a LINK_KEY.
// (capability_segment_mac is 1, capability_owner_proof 2.)
inline constexpr uint32_t capability_link_rebind = 4;
// HELLO capability bit (servers): this server is a member of a roaming pool and sends a
// ROAM_UPDATE right after the channel is up (PROTOCOL.md 13.4, 13.6): a client waits for
// it before it dials, and waits for nobody else.
inline constexpr uint32_t capability_roam_pool = 8;
inline constexpr size_t link_key_bytes = 32;

// The key the client MACs its link rebinds with, bound by the server to `inner`: the
// client's address inside the tunnel, as this channel comes from it.
struct LinkKeyGrant {
  IpAddress inner;
  std::array<uint8_t, link_key_bytes> key{};
  bool operator==(const LinkKeyGrant&) const = default;
};

// Client-held checkpoints (PROTOCOL.md 14). A sealed checkpoint is 1..max_sealed_bytes
// bytes; the channel layer does not look inside (stack/migrate/checkpoint.hpp does).
inline constexpr size_t max_sealed_bytes = 60000;

// CHECKPOINT (type 10): the server's latest sealed state of one of the client's connections.
struct CheckpointPush {
  std::vector<uint8_t> sealed;
  bool operator==(const CheckpointPush&) const = default;
};

// RESUME (type 11): a client whose server died asks the next server to rebuild connection
// `connection_id` from `sealed`, with the sequence space as the client sees it: rcv_nxt =
// the next server byte it expects, snd_una / snd_nxt = its own oldest unacknowledged and
// next byte (sequence numbers of the connection as it was, unchanged by the resume).
struct ResumeRequest {
  uint64_t connection_id = 0;  // non-zero
  uint32_t rcv_nxt = 0;
  uint32_t snd_una = 0;
  uint32_t snd_nxt = 0;
  std::vector<uint8_t> sealed;
  bool operator==(const ResumeRequest&) const = default;
};

enum class ResumeStatus : uint8_t { resumed = 0, refused = 1 };
// Refusal reasons of RESUMED (0 when resumed): 1 + stack/migrate's CheckpointError for the
// checkpoint's own faults (1 truncated .. 12 expired), and these for the server's.
inline constexpr uint8_t resume_reason_none = 0;
inline constexpr uint8_t resume_reason_not_enabled = 32;      // no checkpoint key here
inline constexpr uint8_t resume_reason_connection_live = 33;  // the connection is open here
inline constexpr uint8_t resume_reason_cannot_rebuild = 34;   // app state or sequence view unusable
inline constexpr uint8_t resume_reason_max = 34;

// RESUMED (type 12): the answer to RESUME, naming the connection and the generation used.
// A resumed connection whose new server runs the NAT handover carries its token: the
// client re-points the connection there with the synthetic handshake (PROTOCOL.md 6),
// exactly as after an ACM, so that a strict NAT in front of it admits the new flow.
struct ResumeAnswer {
  uint64_t connection_id = 0;
  uint64_t generation = 0;  // the checkpoint's; 0 when it could not be read
  ResumeStatus status = ResumeStatus::resumed;
  uint8_t reason = resume_reason_none;
  std::optional<std::array<uint8_t, handover_token_bytes>> handover_token;  // only when resumed
  bool operator==(const ResumeAnswer&) const = default;
};

// ROAM_UPDATE (type 9; 7 and 8 are kept for TRANSFER and RATIFY): roam_update.hpp.
using Message = std::variant<Hello, AddressChange, Ack, ErrorMessage, RegisterConnections, LinkKeyGrant, RoamUpdate,
                             CheckpointPush, ResumeRequest, ResumeAnswer>;

enum class MessageError : uint8_t { truncated, trailing_bytes, unknown_type, bad_field, oversized };
const char* message_error_name(MessageError error);

// The message must be valid (decode_message(encode_message(m)) == m).
std::vector<uint8_t> encode_message(const Message& message);
Result<Message, MessageError> decode_message(std::span<const uint8_t> bytes);

}  // namespace roam::control
