#include "stack/migrate/control_frame.hpp"

#include <algorithm>
#include <cstring>

#include "stack/migrate/address_answer.hpp"

namespace roam::migrate {

namespace {
constexpr size_t header_bytes = frame_header_bytes;

bool known_type(uint8_t type) {
  return type >= 1 && type <= 10;
}
}  // namespace

const char* frame_error_name(FrameError error) {
  switch (error) {
    case FrameError::unknown_type:
      return "unknown frame type";
    case FrameError::oversized:
      return "frame too large";
  }
  return "unknown frame error";
}

void append_frame(FrameType type, std::span<const uint8_t> payload, std::vector<uint8_t>& out) {
  // Sized once and filled by index: GCC 12 at -O3 misreads push_back/insert sequences on
  // small vectors as out of bounds (-Warray-bounds false positives).
  auto length = static_cast<uint32_t>(payload.size());
  size_t at = out.size();
  out.resize(at + header_bytes + payload.size());
  uint8_t* h = out.data() + at;
  h[0] = static_cast<uint8_t>(length >> 24);
  h[1] = static_cast<uint8_t>(length >> 16);
  h[2] = static_cast<uint8_t>(length >> 8);
  h[3] = static_cast<uint8_t>(length);
  h[4] = static_cast<uint8_t>(type);
  if (!payload.empty()) std::memcpy(h + header_bytes, payload.data(), payload.size());
}

void append_frame(FrameType type, std::string_view text, std::vector<uint8_t>& out) {
  append_frame(type, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()), out);
}

void begin_frame(FrameType type, std::vector<uint8_t>& out) {
  out.clear();
  append_frame(type, std::span<const uint8_t>(), out);  // the header; finish_frame sets the length
}

void finish_frame(std::vector<uint8_t>& out, size_t header_at) {
  auto length = static_cast<uint32_t>(out.size() - header_at - header_bytes);
  out[header_at] = static_cast<uint8_t>(length >> 24);
  out[header_at + 1] = static_cast<uint8_t>(length >> 16);
  out[header_at + 2] = static_cast<uint8_t>(length >> 8);
  out[header_at + 3] = static_cast<uint8_t>(length);
}

void FrameReader::feed(std::span<const uint8_t> bytes) {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

void FrameReader::feed(std::vector<uint8_t>&& bytes) {
  if (consumed_ == buffer_.size()) {
    buffer_ = std::move(bytes);
    consumed_ = 0;
    return;
  }
  feed(std::span<const uint8_t>(bytes));
}

Result<std::optional<Frame>, FrameError> FrameReader::next() {
  size_t available = buffer_.size() - consumed_;
  if (available < header_bytes) return std::optional<Frame>{};
  const uint8_t* h = buffer_.data() + consumed_;
  uint32_t length =
      static_cast<uint32_t>(h[0]) << 24 | static_cast<uint32_t>(h[1]) << 16 | static_cast<uint32_t>(h[2]) << 8 | h[3];
  if (!known_type(h[4])) return unexpected(FrameError::unknown_type);
  if (length > max_frame_payload) return unexpected(FrameError::oversized);
  if (available < header_bytes + length) return std::optional<Frame>{};
  Frame frame{static_cast<FrameType>(h[4]), std::vector<uint8_t>(h + header_bytes, h + header_bytes + length)};
  consumed_ += header_bytes + length;
  // Compact now and then so a long-lived channel does not grow without bound.
  if (consumed_ > (1u << 20) && consumed_ * 2 > buffer_.size()) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
  }
  return std::optional<Frame>{std::move(frame)};
}

const char* leg_role_name(LegRole role) {
  switch (role) {
    case LegRole::client:
      return "client";
    case LegRole::origin:
      return "origin";
  }
  return "unknown role";
}

const char* session_payload_error_name(SessionPayloadError error) {
  switch (error) {
    case SessionPayloadError::truncated:
      return "truncated";
    case SessionPayloadError::unknown_version:
      return "unknown session frame version (this server takes version 2)";
    case SessionPayloadError::bad_field:
      return "bad field";
    case SessionPayloadError::trailing_bytes:
      return "trailing bytes";
  }
  return "unknown session payload error";
}

// Vectors are sized once and filled by index or memcpy: GCC 12 at -O3 misreads
// vector::insert of a short range as out of bounds (-Warray-bounds, a false positive).
void append_session_header(std::string_view kind, size_t leg_count, std::vector<uint8_t>& out) {
  size_t at = out.size();
  out.resize(at + 4 + kind.size());
  out[at] = 0;
  out[at + 1] = session_payload_version;
  out[at + 2] = static_cast<uint8_t>(kind.size());
  if (!kind.empty()) std::memcpy(out.data() + at + 3, kind.data(), kind.size());
  out[at + 3 + kind.size()] = static_cast<uint8_t>(leg_count);
}

size_t begin_session_leg(LegRole role, const std::optional<HandoverToken>& token, std::vector<uint8_t>& out) {
  size_t at = out.size();
  size_t token_length = token ? token->size() : 0;
  out.resize(at + 2 + token_length + 4);
  out[at] = static_cast<uint8_t>(role);
  out[at + 1] = static_cast<uint8_t>(token_length);
  if (token) std::memcpy(out.data() + at + 2, token->data(), token_length);
  size_t length_at = at + 2 + token_length;
  std::memset(out.data() + length_at, 0, 4);
  return length_at;
}

void finish_session_leg(size_t length_at, std::vector<uint8_t>& out) {
  auto length = static_cast<uint32_t>(out.size() - length_at - 4);
  out[length_at] = static_cast<uint8_t>(length >> 24);
  out[length_at + 1] = static_cast<uint8_t>(length >> 16);
  out[length_at + 2] = static_cast<uint8_t>(length >> 8);
  out[length_at + 3] = static_cast<uint8_t>(length);
}

std::vector<uint8_t> encode_session_payload(const SessionPayload& payload) {
  std::vector<uint8_t> out;
  append_session_header(payload.kind, payload.legs.size(), out);
  for (const auto& leg : payload.legs) {
    size_t length_at = begin_session_leg(leg.role, leg.handover_token, out);
    size_t at = out.size();
    out.resize(at + leg.snapshot.size());
    if (!leg.snapshot.empty()) std::memcpy(out.data() + at, leg.snapshot.data(), leg.snapshot.size());
    finish_session_leg(length_at, out);
  }
  return out;
}

Result<SessionPayload, SessionPayloadError> decode_session_payload(std::span<const uint8_t> payload) {
  if (payload.size() < 2) return unexpected(SessionPayloadError::truncated);
  if (payload[0] != 0 || payload[1] != session_payload_version) return unexpected(SessionPayloadError::unknown_version);
  size_t at = 2;
  auto need = [&](size_t bytes) { return payload.size() - at >= bytes; };
  if (!need(1)) return unexpected(SessionPayloadError::truncated);
  size_t kind_length = payload[at++];
  if (kind_length == 0) return unexpected(SessionPayloadError::bad_field);
  if (!need(kind_length + 1)) return unexpected(SessionPayloadError::truncated);
  SessionPayload out;
  out.kind.assign(reinterpret_cast<const char*>(payload.data() + at), kind_length);
  at += kind_length;
  size_t leg_count = payload[at++];
  if (leg_count == 0 || leg_count > max_session_legs) return unexpected(SessionPayloadError::bad_field);
  out.legs.reserve(leg_count);
  for (size_t i = 0; i < leg_count; ++i) {
    if (!need(2)) return unexpected(SessionPayloadError::truncated);
    uint8_t role = payload[at];
    size_t token_length = payload[at + 1];
    at += 2;
    if (role != static_cast<uint8_t>(LegRole::client) && role != static_cast<uint8_t>(LegRole::origin))
      return unexpected(SessionPayloadError::bad_field);
    SessionLegPayload leg;
    leg.role = static_cast<LegRole>(role);
    // The NAT handover is the client's: an origin is told by the new host itself.
    if (token_length != 0 && (leg.role != LegRole::client || token_length != HandoverToken{}.size()))
      return unexpected(SessionPayloadError::bad_field);
    if (!need(token_length + 4)) return unexpected(SessionPayloadError::truncated);
    if (token_length != 0) {
      leg.handover_token.emplace();
      std::memcpy(leg.handover_token->data(), payload.data() + at, token_length);
      at += token_length;
    }
    const uint8_t* l = payload.data() + at;
    size_t snapshot_length = static_cast<size_t>(l[0]) << 24 | static_cast<size_t>(l[1]) << 16 |
                             static_cast<size_t>(l[2]) << 8 | l[3];
    at += 4;
    if (!need(snapshot_length)) return unexpected(SessionPayloadError::truncated);
    leg.snapshot = payload.subspan(at, snapshot_length);
    at += snapshot_length;
    out.legs.push_back(leg);
  }
  if (at != payload.size()) return unexpected(SessionPayloadError::trailing_bytes);
  return out;
}

std::vector<uint8_t> encode_session_result(bool ok, std::string_view text) {
  std::vector<uint8_t> out(1 + text.size());
  out[0] = ok ? 1 : 0;
  if (!text.empty()) std::memcpy(out.data() + 1, text.data(), text.size());
  return out;
}

std::optional<SessionResult> decode_session_result(std::span<const uint8_t> payload) {
  if (payload.empty() || payload[0] > 1) return std::nullopt;
  return SessionResult{payload[0] == 1, std::string(payload.begin() + 1, payload.end())};
}

// "address IPV4[ IPV6]" (a target's answer to address_request) -> its addresses; empty
// when the text is anything else (address_answer.hpp: feature words after them are fine).
std::vector<IpAddress> parse_address_answer(const std::string& text) {
  auto answer = decode_address_answer(text);
  return answer ? std::move(answer->addresses) : std::vector<IpAddress>{};
}

}  // namespace roam::migrate
