// The app state of a proxy session's checkpoint (PROTOCOL.md 14.8.2): which relayed
// connection the session's origin leg carries, and the stream offsets of the client leg's
// sequence points, so that the next proxy can ask the relay to re-send from exactly the
// byte the client needs. Pure, no allocation beyond the returned bytes; any thread.
//
// Layout (big-endian), 25 bytes:
//   u8 version = 2 | u64 relayed connection id (non-zero)
//   | u64 down (the down offset of the byte at the snapshot's snd_nxt)
//   | u64 up (the up offset of the byte at the snapshot's rcv_nxt)
// Version 1 is the live-move app state of a proxy session (a version byte only), so a
// checkpoint's state can never be mistaken for it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.hpp"
#include "stack/wire/byte_reader.hpp"

namespace roam {

inline constexpr uint8_t proxy_resume_state_version = 2;
inline constexpr size_t proxy_resume_state_bytes = 25;
// Stream offsets stay below this: far beyond any stream, and the signed shifts of a
// resume (at most 2^30) can never wrap them.
inline constexpr uint64_t max_stream_offset = uint64_t{1} << 62;

struct ProxyResumeState {
  uint64_t relayed_id = 0;  // the origin leg's connection id (PROTOCOL.md 1.2)
  uint64_t down = 0;        // offset of the next byte the proxy writes to the client
  uint64_t up = 0;          // offset of the next byte the proxy receives from the client
  bool operator==(const ProxyResumeState&) const = default;
};

enum class ProxyResumeStateError : uint8_t { truncated, trailing_bytes, unknown_version, bad_field };
const char* proxy_resume_state_error_name(ProxyResumeStateError error);

// The state's three fields as this state (after its version byte) and RELAY_RESUME (after
// its magic and version, apps/relay_replay.hpp) both carry them: u64 relayed connection id
// | u64 down | u64 up. put: the state must be valid. read: the caller checked the length;
// nullopt when the id is 0 or an offset is at or above max_stream_offset.
void put_proxy_resume_fields(std::vector<uint8_t>& out, const ProxyResumeState& state);
std::optional<ProxyResumeState> read_proxy_resume_fields(wire::ByteReader& reader);

// The state must be valid (id non-zero, offsets below max_stream_offset).
std::vector<uint8_t> encode_proxy_resume_state(const ProxyResumeState& state);
// Exactly one state occupying all of `bytes`.
Result<ProxyResumeState, ProxyResumeStateError> decode_proxy_resume_state(std::span<const uint8_t> bytes);

// The client's view of a resumed session (PROTOCOL.md 14.8.2): down moves by the
// alignment's send_shift (to the client's rcv_nxt), up by its receive_shift (to the
// client's snd_una). nullopt when either leaves 0..max_stream_offset.
std::optional<ProxyResumeState> rebase_proxy_resume_state(const ProxyResumeState& state, int64_t send_shift,
                                                          int64_t receive_shift);

// The client leg's app state when a proxy session moves live (PROTOCOL.md 4.3), so the
// stream offsets move with it: u8 version 3 | u64 down | u64 up (17 bytes). Version 1 (the
// version byte alone, from a host that does not count) still decodes, to nullopt offsets:
// such a session is never checkpointed.
inline constexpr uint8_t proxy_move_state_bare = 1;
inline constexpr uint8_t proxy_move_state_version = 3;
inline constexpr size_t proxy_move_state_bytes = 17;
struct ProxyStreamOffsets {
  uint64_t down = 0;
  uint64_t up = 0;
  bool operator==(const ProxyStreamOffsets&) const = default;
};
std::vector<uint8_t> encode_proxy_move_state(const std::optional<ProxyStreamOffsets>& offsets);
// Outer nullopt: not a proxy move state (another version, another length, an offset at or
// above max_stream_offset); inner nullopt: version 1, offsets unknown.
std::optional<std::optional<ProxyStreamOffsets>> decode_proxy_move_state(std::span<const uint8_t> bytes);

}  // namespace roam
