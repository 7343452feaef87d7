#include "stack/migrate/control_frame.hpp"

#include <cstring>

namespace roam::migrate {

namespace {
constexpr size_t header_bytes = 5;

bool known_type(uint8_t type) {
  return type >= 1 && type <= 5;
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

void finish_frame(std::vector<uint8_t>& out) {
  auto length = static_cast<uint32_t>(out.size() - header_bytes);
  out[0] = static_cast<uint8_t>(length >> 24);
  out[1] = static_cast<uint8_t>(length >> 16);
  out[2] = static_cast<uint8_t>(length >> 8);
  out[3] = static_cast<uint8_t>(length);
}

void FrameReader::feed(std::span<const uint8_t> bytes) {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
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

void append_session_header(std::string_view kind, const std::optional<HandoverToken>& token,
                           std::vector<uint8_t>& out) {
  // Sized once and filled with memcpy: GCC 12 at -O3 misreads vector::insert of a short
  // range as out of bounds (-Warray-bounds, a false positive).
  size_t at = out.size();
  size_t token_length = token ? token->size() : 0;
  out.resize(at + 2 + kind.size() + token_length);
  out[at] = static_cast<uint8_t>(kind.size());
  if (!kind.empty()) std::memcpy(out.data() + at + 1, kind.data(), kind.size());
  out[at + 1 + kind.size()] = static_cast<uint8_t>(token_length);
  if (token) std::memcpy(out.data() + at + 2 + kind.size(), token->data(), token_length);
}

std::vector<uint8_t> encode_session_payload(std::string_view kind, const std::optional<HandoverToken>& token,
                                            std::span<const uint8_t> snapshot) {
  std::vector<uint8_t> out;
  out.reserve(2 + kind.size() + 32 + snapshot.size());
  append_session_header(kind, token, out);
  size_t at = out.size();
  out.resize(at + snapshot.size());
  if (!snapshot.empty()) std::memcpy(out.data() + at, snapshot.data(), snapshot.size());
  return out;
}

std::optional<SessionPayload> decode_session_payload(std::span<const uint8_t> payload) {
  if (payload.empty()) return std::nullopt;
  size_t kind_length = payload[0];
  if (kind_length == 0 || payload.size() < 2 + kind_length) return std::nullopt;
  SessionPayload out;
  out.kind.assign(reinterpret_cast<const char*>(payload.data() + 1), kind_length);
  size_t token_length = payload[1 + kind_length];
  size_t token_at = 2 + kind_length;
  if (token_length != 0 && token_length != HandoverToken{}.size()) return std::nullopt;
  if (payload.size() < token_at + token_length) return std::nullopt;
  if (token_length != 0) {
    out.handover_token.emplace();
    std::memcpy(out.handover_token->data(), payload.data() + token_at, token_length);
  }
  out.snapshot = payload.subspan(token_at + token_length);
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

}  // namespace roam::migrate
