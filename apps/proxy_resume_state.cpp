#include "apps/proxy_resume_state.hpp"

#include "stack/wire/byte_reader.hpp"
#include "stack/wire/byte_writer.hpp"

namespace roam {

namespace {
// offset + shift within 0..max_stream_offset (exclusive), without overflow: both operands
// are checked below 2^62 in size first, so the sum fits an int64.
std::optional<uint64_t> shifted(uint64_t offset, int64_t shift) {
  constexpr auto bound = static_cast<int64_t>(max_stream_offset);
  if (offset >= max_stream_offset || shift >= bound || shift <= -bound) return std::nullopt;
  const int64_t moved = static_cast<int64_t>(offset) + shift;
  if (moved < 0 || static_cast<uint64_t>(moved) >= max_stream_offset) return std::nullopt;
  return static_cast<uint64_t>(moved);
}
}  // namespace

const char* proxy_resume_state_error_name(ProxyResumeStateError error) {
  switch (error) {
    case ProxyResumeStateError::truncated:
      return "truncated";
    case ProxyResumeStateError::trailing_bytes:
      return "trailing bytes";
    case ProxyResumeStateError::unknown_version:
      return "unknown version";
    case ProxyResumeStateError::bad_field:
      return "bad field";
  }
  return "unknown error";
}

void put_proxy_resume_fields(std::vector<uint8_t>& out, const ProxyResumeState& state) {
  wire::put_u64(out, state.relayed_id);
  wire::put_u64(out, state.down);
  wire::put_u64(out, state.up);
}

std::optional<ProxyResumeState> read_proxy_resume_fields(wire::ByteReader& reader) {
  ProxyResumeState state;
  state.relayed_id = reader.u64();
  state.down = reader.u64();
  state.up = reader.u64();
  if (state.relayed_id == 0 || state.down >= max_stream_offset || state.up >= max_stream_offset) return std::nullopt;
  return state;
}

std::vector<uint8_t> encode_proxy_resume_state(const ProxyResumeState& state) {
  std::vector<uint8_t> out;
  out.reserve(proxy_resume_state_bytes);
  wire::put_u8(out, proxy_resume_state_version);
  put_proxy_resume_fields(out, state);
  return out;
}

Result<ProxyResumeState, ProxyResumeStateError> decode_proxy_resume_state(std::span<const uint8_t> bytes) {
  if (bytes.size() < proxy_resume_state_bytes) return unexpected(ProxyResumeStateError::truncated);
  if (bytes.size() > proxy_resume_state_bytes) return unexpected(ProxyResumeStateError::trailing_bytes);
  wire::ByteReader reader(bytes);
  if (reader.u8() != proxy_resume_state_version) return unexpected(ProxyResumeStateError::unknown_version);
  auto state = read_proxy_resume_fields(reader);
  if (!state) return unexpected(ProxyResumeStateError::bad_field);
  return *state;
}

std::optional<ProxyResumeState> rebase_proxy_resume_state(const ProxyResumeState& state, int64_t send_shift,
                                                          int64_t receive_shift) {
  auto down = shifted(state.down, send_shift);
  auto up = shifted(state.up, receive_shift);
  if (!down || !up) return std::nullopt;
  ProxyResumeState out = state;
  out.down = *down;
  out.up = *up;
  return out;
}

std::vector<uint8_t> encode_proxy_move_state(const std::optional<ProxyStreamOffsets>& offsets) {
  if (!offsets) return {proxy_move_state_bare};
  std::vector<uint8_t> out;
  out.reserve(proxy_move_state_bytes);
  wire::put_u8(out, proxy_move_state_version);
  wire::put_u64(out, offsets->down);
  wire::put_u64(out, offsets->up);
  return out;
}

std::optional<std::optional<ProxyStreamOffsets>> decode_proxy_move_state(std::span<const uint8_t> bytes) {
  if (bytes.size() == 1 && bytes[0] == proxy_move_state_bare) return std::optional<ProxyStreamOffsets>{};
  if (bytes.size() != proxy_move_state_bytes || bytes[0] != proxy_move_state_version) return std::nullopt;
  wire::ByteReader reader(bytes.subspan(1));
  ProxyStreamOffsets offsets;
  offsets.down = reader.u64();
  offsets.up = reader.u64();
  if (offsets.down >= max_stream_offset || offsets.up >= max_stream_offset) return std::nullopt;
  return std::optional<ProxyStreamOffsets>{offsets};
}

}  // namespace roam
