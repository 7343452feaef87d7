// The `files` app's pure parts: its request line and the versioned encoding of a session's
// state that travels in a connection snapshot when the session moves. No I/O, no lwIP, no
// allocation beyond the returned values; any thread.
//
// Request (client -> server, once): `NAME[ OFFSET]\n`, at most files_max_request_bytes
// including the newline. NAME matches [A-Za-z0-9._-]{1,128} and is neither "." nor "..";
// OFFSET is decimal (default 0). The server answers with the file's bytes from OFFSET.
//
// State layout (integers big-endian), version 1:
//   u8 version | u8 phase
//   phase 0 (reading_request): u16 length + the request bytes received so far
//                              (at most files_max_request_bytes - 1, no newline)
//   phase 1 (sending):         u8 length + name | u64 offset | u64 size (offset <= size)
// Fields of the other phase are not encoded and decode to their defaults. Decoding rejects
// truncation, trailing bytes, an unknown version or phase, a bad name and offset > size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

namespace roam {

inline constexpr uint8_t files_state_version = 1;
inline constexpr size_t files_max_request_bytes = 256;  // including the newline
inline constexpr size_t files_max_name_bytes = 128;

enum class FilesPhase : uint8_t { reading_request = 0, sending = 1 };

struct FilesState {
  FilesPhase phase = FilesPhase::reading_request;
  std::string request_so_far;  // reading_request: the request line's bytes so far
  std::string name;            // sending: the file, relative to the server's root
  uint64_t offset = 0;         // sending: the next file byte to hand to tcp_write
  uint64_t size = 0;           // sending: the file's size when the request was accepted

  bool operator==(const FilesState&) const = default;
};

enum class FilesStateError : uint8_t {
  truncated,
  trailing_bytes,
  unknown_version,
  bad_phase,
  bad_request,  // request_so_far too long or holding a newline
  bad_name,
  offset_beyond_size,
};

const char* files_state_error_name(FilesStateError error);

// The state must be valid (decode would accept its encoding).
std::vector<uint8_t> encode_files_state(const FilesState& state);
// Decodes exactly one state occupying all of `bytes`.
Result<FilesState, FilesStateError> decode_files_state(std::span<const uint8_t> bytes);

// A session rebuilt from a client-held checkpoint (PROTOCOL.md 14.5): its output position
// moved by `send_shift` bytes (stack/migrate/resume_alignment.hpp), so it sends exactly
// the bytes the client has not received. Only a session in phase `sending`; the new offset
// must stay within 0..size. Returns nullopt otherwise.
std::optional<FilesState> rebase_files_state(const FilesState& state, int64_t send_shift);

// Whether `name` may name a file under the root: [A-Za-z0-9._-]{1,128}, not "." or "..".
// No slash can pass, so a valid name never leaves the root directory.
bool is_valid_file_name(std::string_view name);

struct FilesRequest {
  std::string name;
  uint64_t offset = 0;
};

enum class FilesRequestError : uint8_t { bad_name, bad_offset };

const char* files_request_error_name(FilesRequestError error);

// Parses one request line without its newline: `NAME` or `NAME OFFSET`.
Result<FilesRequest, FilesRequestError> parse_files_request(std::string_view line);

}  // namespace roam
