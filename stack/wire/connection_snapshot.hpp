// ConnectionSnapshot: everything needed to rebuild one live TCP connection on another host
// (seed 000's Connector, seed 003's search_pcb/modify_pcb), and its versioned binary
// encoding. Pure: no lwIP, no I/O; stack/migrate/ fills and applies it. Any thread.
//
// Wire layout (all integers big-endian), version 1:
//   magic "RSNP" | u16 version | u16 flags | u32 body length | body
//   body: u8 ip version (4 or 6) | local address (4 or 16) | remote address (4 or 16)
//         | u16 local port | u16 remote port | u64 connection id | u8 state
//         | send state | receive state | options
//         | u32 length + unacked bytes | u32 length + unsent bytes
//         | u32 length + received bytes | u32 length + app state
//   send state: u32 snd_una, snd_nxt, snd_wnd, snd_wnd_max, snd_wl1, snd_wl2, cwnd, ssthresh
//         | u16 mss | u8 snd_scale | i16 rtt_sa, rtt_sv, rto (two's complement)
//   receive state: u32 rcv_nxt, rcv_wnd, rcv_ann_wnd, rcv_ann_right_edge | u8 rcv_scale
//   options: u8 bits (0x01 nodelay, 0x02 window_scaling, 0x04 keepalive; others 0)
//         | u32 keep_idle_ms, keep_interval_ms, keep_count | u8 tos | u8 ttl
//   One ip version covers both addresses. The body is 111 bytes plus the four parts for IPv4,
//   135 for IPv6; every accepted input is the one encoding of what it decodes to.
// Optional sections: each bit of `flags` names one, appended to the body after the app
// state in bit order, and is set exactly when the section is there. A decoder refuses a
// bit it does not know (bad_field), so an old decoder refuses a snapshot whose receiver
// would silently drop something, instead of misreading it; snapshots without sections
// (flags 0) are what version 1 always was.
//   0x0001 segment MAC (SegmentMacState): u8 direction (0 client->server, 1 server->client:
//          the direction the holder's own segments travel) | u64 connection id (equal to
//          the body's, non-zero) | 16 key bytes (crypto/segment_mac's SipHash key): 25 bytes.
//   0x0002 owner: the 32-byte static public key of the client whose control channel owns
//          the connection (its SYN proved it, or its first registration bound it): the new
//          host accepts registrations of the connection only from a channel with that key.
//   0x0004 pre-copied (SnapshotPrecopied): u32 send_seq | u32 send_length | u32 receive_seq
//          | u32 receive_length: 16 bytes. The snapshot is a *delta*: the first send_length
//          bytes of the send stream (unacked then unsent, from send_seq = snd_una) and the
//          first receive_length bytes of the received part (from receive_seq) are left out:
//          the receiver already holds them (precopy frames, docs/PROTOCOL.md 4.3). Then
//          unacked holds [snd_una + send_length, snd_nxt) (empty when send_length reaches
//          snd_nxt) and unsent the rest; receive_seq + receive_length + len(received) =
//          rcv_nxt. stack/migrate/precopy.hpp splices the full snapshot back.
// Decoding rejects truncation, trailing bytes, an unknown magic, version or flag, oversized
// parts and internal inconsistency, and creates nothing on error.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/ip_address.hpp"
#include "base/result.hpp"

namespace roam::wire {

inline constexpr uint16_t snapshot_version = 1;
// Bounds: one connection never holds more than this in any one queue (lwIP's send buffer
// and window are 4 MiB here; the margin allows larger builds), nor this much app state.
inline constexpr size_t snapshot_max_queue_bytes = 64u << 20;
inline constexpr size_t snapshot_max_app_state_bytes = 1u << 20;

// Only connections in these states can move: both ends still exchange data.
enum class SnapshotTcpState : uint8_t { established = 1, close_wait = 2 };

struct SnapshotSendState {
  uint32_t snd_una = 0;      // oldest unacknowledged sequence number (lwIP lastack)
  uint32_t snd_nxt = 0;      // next sequence number to send
  uint32_t snd_wnd = 0;      // peer's window, already scaled
  uint32_t snd_wnd_max = 0;  // largest window the peer announced
  uint32_t snd_wl1 = 0;      // seq of the segment that last updated snd_wnd
  uint32_t snd_wl2 = 0;      // ack of that segment
  uint32_t cwnd = 0;
  uint32_t ssthresh = 0;
  uint16_t mss = 0;       // effective send MSS
  uint8_t snd_scale = 0;  // peer's window scale shift
  int16_t rtt_sa = 0;     // smoothed RTT estimator (lwIP ticks, scaled as lwIP keeps it)
  int16_t rtt_sv = 0;     // RTT variance estimator
  int16_t rto = 0;        // retransmission timeout, lwIP slow-timer ticks
};

struct SnapshotReceiveState {
  uint32_t rcv_nxt = 0;             // next sequence number expected
  uint32_t rcv_wnd = 0;             // receive window still available
  uint32_t rcv_ann_wnd = 0;         // window last announced
  uint32_t rcv_ann_right_edge = 0;  // right edge of the announced window
  uint8_t rcv_scale = 0;            // our window scale shift
};

struct SnapshotOptions {
  bool nodelay = false;
  bool window_scaling = false;  // both ends agreed on window scaling (TF_WND_SCALE)
  bool keepalive = false;
  uint32_t keep_idle_ms = 0;
  uint32_t keep_interval_ms = 0;
  uint32_t keep_count = 0;
  uint8_t tos = 0;
  uint8_t ttl = 0;
};

// Secret bytes held by value (a key on its way through a snapshot), wiped whenever a copy
// is destroyed or overwritten. For keys at rest use crypto::SecretBytes (sodium memory);
// this layer has no libsodium.
template <size_t N>
class WipedBytes {
 public:
  WipedBytes() = default;
  WipedBytes(const WipedBytes&) = default;
  WipedBytes& operator=(const WipedBytes& other) {
    bytes_ = other.bytes_;
    return *this;
  }
  ~WipedBytes() { wipe(); }

  uint8_t* data() { return bytes_.data(); }
  const uint8_t* data() const { return bytes_.data(); }
  static constexpr size_t size() { return N; }
  std::span<const uint8_t, N> span() const { return std::span<const uint8_t, N>(bytes_); }
  std::span<uint8_t, N> span() { return std::span<uint8_t, N>(bytes_); }
  void wipe();
  // Not constant-time: for tests and decode checks, never to compare a secret with input.
  bool operator==(const WipedBytes& other) const { return bytes_ == other.bytes_; }

 private:
  std::array<uint8_t, N> bytes_{};
};

void wipe_bytes(void* data, size_t size);  // explicit_bzero: not optimised away
template <size_t N>
void WipedBytes<N>::wipe() {
  wipe_bytes(bytes_.data(), N);
}

// Which end's segments a segment-MAC state signs (values as crypto::SegmentDirection).
enum class SegmentMacDirection : uint8_t { client_to_server = 0, server_to_client = 1 };
inline constexpr size_t segment_mac_key_bytes = 16;  // crypto_shorthash_siphashx24_KEYBYTES

// The per-segment MAC of one connection (crypto/segment_mac, SegmentMacGuard) as it moves
// with the connection: the new host checks and signs its segments from the first one,
// without a new registration on a control channel.
struct SegmentMacState {
  uint64_t connection_id = 0;                                         // the id the key was derived for
  SegmentMacDirection outbound = SegmentMacDirection::server_to_client;  // the holder's own segments
  WipedBytes<segment_mac_key_bytes> key;                              // secret
  bool operator==(const SegmentMacState&) const = default;
};

// Flag bits of the snapshot header (optional sections).
inline constexpr uint16_t snapshot_flag_segment_mac = 0x0001;
inline constexpr uint16_t snapshot_flag_owner = 0x0002;
inline constexpr uint16_t snapshot_flag_precopied = 0x0004;
inline constexpr size_t snapshot_owner_bytes = 32;

// The stream bytes a delta snapshot leaves out, because the new host received them ahead
// of the freeze (pre-copy). Lengths 0 mean nothing omitted; at least one is non-zero.
struct SnapshotPrecopied {
  uint32_t send_seq = 0;        // = snd_una: the first omitted byte of the send stream
  uint32_t send_length = 0;     // omitted from the front of unacked + unsent
  uint32_t receive_seq = 0;     // the first omitted unread received byte
  uint32_t receive_length = 0;  // omitted from the front of received (ESTABLISHED only)
  bool operator==(const SnapshotPrecopied&) const = default;
};

struct ConnectionSnapshot {
  IpAddress local_address;
  IpAddress remote_address;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  uint64_t connection_id = 0;  // agreed id (later issues); 0 when none
  SnapshotTcpState state = SnapshotTcpState::established;
  SnapshotSendState send;
  SnapshotReceiveState receive;
  SnapshotOptions options;
  std::vector<uint8_t> unacked;    // bytes snd_una .. snd_nxt: sent, not acknowledged
  std::vector<uint8_t> unsent;     // bytes from snd_nxt: written by the app, not sent yet
  std::vector<uint8_t> received;   // acknowledged to the peer, not yet consumed by the app
  std::vector<uint8_t> app_state;  // opaque to the stack; the app's own encoding
  std::optional<SegmentMacState> segment_mac;  // set when the connection is protected (secret)
  std::optional<std::array<uint8_t, snapshot_owner_bytes>> owner;  // the owning client's key (public)
  std::optional<SnapshotPrecopied> precopied;  // set: a delta (import only after splicing)
};

enum class SnapshotError : uint8_t {
  truncated,  // shorter than its header or its declared parts
  bad_magic,  // not a snapshot
  unknown_version,
  oversized,       // a part longer than its bound
  trailing_bytes,  // bytes after the declared body
  bad_field,       // a field out of its range (ip version, port 0, scale > 14, state, flag...)
  inconsistent,    // fields disagree (unacked length != snd_nxt - snd_una, ...)
};

const char* snapshot_error_name(SnapshotError error);

// Checks the snapshot's own invariants (the same ones decode enforces).
Result<Ok, SnapshotError> validate_snapshot(const ConnectionSnapshot& snapshot);

// Appends the encoding to `out`. The snapshot must be valid (validate_snapshot). With a
// segment_mac the encoding holds its key: wipe `out` (wipe_bytes) once it is sent.
void encode_snapshot(const ConnectionSnapshot& snapshot, std::vector<uint8_t>& out);
std::vector<uint8_t> encode_snapshot(const ConnectionSnapshot& snapshot);

// Decodes exactly one snapshot occupying all of `bytes`.
Result<ConnectionSnapshot, SnapshotError> decode_snapshot(std::span<const uint8_t> bytes);

}  // namespace roam::wire
