#include "apps/files_state.hpp"

#include <charconv>

#include "stack/wire/byte_reader.hpp"

namespace roam {
namespace {

using Reader = wire::ByteReader;

void put_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
void put_text(std::vector<uint8_t>& out, const std::string& text) {
  out.insert(out.end(), text.begin(), text.end());
}

bool is_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

}  // namespace

const char* files_state_error_name(FilesStateError error) {
  switch (error) {
    case FilesStateError::truncated:
      return "truncated";
    case FilesStateError::trailing_bytes:
      return "trailing bytes";
    case FilesStateError::unknown_version:
      return "unknown version";
    case FilesStateError::bad_phase:
      return "unknown phase";
    case FilesStateError::bad_request:
      return "bad partial request";
    case FilesStateError::bad_name:
      return "bad file name";
    case FilesStateError::offset_beyond_size:
      return "offset beyond the file size";
  }
  return "unknown error";
}

const char* files_request_error_name(FilesRequestError error) {
  switch (error) {
    case FilesRequestError::bad_name:
      return "bad file name";
    case FilesRequestError::bad_offset:
      return "bad offset";
  }
  return "unknown error";
}

bool is_valid_file_name(std::string_view name) {
  if (name.empty() || name.size() > files_max_name_bytes || name == "." || name == "..") return false;
  for (char c : name)
    if (!is_name_char(c)) return false;
  return true;
}

std::vector<uint8_t> encode_files_state(const FilesState& state) {
  std::vector<uint8_t> out;
  out.push_back(files_state_version);
  out.push_back(static_cast<uint8_t>(state.phase));
  if (state.phase == FilesPhase::reading_request) {
    put_u16(out, static_cast<uint16_t>(state.request_so_far.size()));
    put_text(out, state.request_so_far);
  } else {
    out.push_back(static_cast<uint8_t>(state.name.size()));
    put_text(out, state.name);
    put_u64(out, state.offset);
    put_u64(out, state.size);
  }
  return out;
}

Result<FilesState, FilesStateError> decode_files_state(std::span<const uint8_t> bytes) {
  Reader r(bytes);
  uint8_t version = r.u8();
  if (r.failed()) return unexpected(FilesStateError::truncated);
  if (version != files_state_version) return unexpected(FilesStateError::unknown_version);
  uint8_t phase = r.u8();
  if (r.failed()) return unexpected(FilesStateError::truncated);
  FilesState state;
  if (phase == static_cast<uint8_t>(FilesPhase::reading_request)) {
    state.phase = FilesPhase::reading_request;
    uint16_t length = r.u16();
    if (r.failed()) return unexpected(FilesStateError::truncated);
    // A complete line would have been acted on: what waits is shorter than the limit.
    if (length >= files_max_request_bytes) return unexpected(FilesStateError::bad_request);
    state.request_so_far = r.text(length);
    if (r.failed()) return unexpected(FilesStateError::truncated);
    if (state.request_so_far.find('\n') != std::string::npos) return unexpected(FilesStateError::bad_request);
  } else if (phase == static_cast<uint8_t>(FilesPhase::sending)) {
    state.phase = FilesPhase::sending;
    uint8_t length = r.u8();
    state.name = r.text(length);
    state.offset = r.u64();
    state.size = r.u64();
    if (r.failed()) return unexpected(FilesStateError::truncated);
    if (!is_valid_file_name(state.name)) return unexpected(FilesStateError::bad_name);
    if (state.offset > state.size) return unexpected(FilesStateError::offset_beyond_size);
  } else {
    return unexpected(FilesStateError::bad_phase);
  }
  if (r.remaining() != 0) return unexpected(FilesStateError::trailing_bytes);
  return state;
}

Result<FilesRequest, FilesRequestError> parse_files_request(std::string_view line) {
  FilesRequest request;
  size_t space = line.find(' ');
  std::string_view name = line.substr(0, space);
  if (!is_valid_file_name(name)) return unexpected(FilesRequestError::bad_name);
  request.name = std::string(name);
  if (space == std::string_view::npos) return request;
  std::string_view digits = line.substr(space + 1);
  if (digits.empty()) return unexpected(FilesRequestError::bad_offset);
  for (char c : digits)
    if (c < '0' || c > '9') return unexpected(FilesRequestError::bad_offset);
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), request.offset);
  if (ec != std::errc() || end != digits.data() + digits.size()) return unexpected(FilesRequestError::bad_offset);
  return request;
}

std::optional<FilesState> rebase_files_state(const FilesState& state, int64_t send_shift) {
  if (state.phase != FilesPhase::sending) return std::nullopt;
  if (send_shift < 0 && static_cast<uint64_t>(-send_shift) > state.offset) return std::nullopt;
  if (send_shift > 0 && static_cast<uint64_t>(send_shift) > state.size - state.offset) return std::nullopt;
  FilesState out = state;
  out.offset = send_shift < 0 ? state.offset - static_cast<uint64_t>(-send_shift)
                              : state.offset + static_cast<uint64_t>(send_shift);
  return out;
}

}  // namespace roam
