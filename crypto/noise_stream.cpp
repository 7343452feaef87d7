#include "crypto/noise_stream.hpp"

#include <algorithm>
#include <utility>

namespace roam::crypto {

namespace {

void append_framed(std::span<const uint8_t> body, std::vector<uint8_t>& out) {
  out.push_back(static_cast<uint8_t>(body.size() >> 8));
  out.push_back(static_cast<uint8_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
}

}  // namespace

const char* noise_stream_error_name(NoiseStreamError error) {
  switch (error) {
    case NoiseStreamError::handshake_failed:
      return "control handshake failed";
    case NoiseStreamError::bad_payload:
      return "oversized handshake payload";
    case NoiseStreamError::forged:
      return "record did not authenticate";
    case NoiseStreamError::bad_length:
      return "bad record length";
    case NoiseStreamError::not_established:
      return "handshake not finished";
  }
  return "unknown control stream error";
}

NoiseStream::NoiseStream(NoiseRole role, const IdentityKey& local, std::vector<uint8_t> credential)
    : role_(role), credential_(std::move(credential)) {
  const auto* prologue = reinterpret_cast<const uint8_t*>(noise_stream_prologue);
  handshake_.emplace(NoisePattern::xx, role, local,
                     std::span<const uint8_t>(prologue, sizeof(noise_stream_prologue) - 1));
  if (credential_.size() > noise_stream_max_payload) failed_ = true;
}

std::vector<uint8_t> NoiseStream::start() {
  std::vector<uint8_t> out;
  if (started_ || failed_ || role_ != NoiseRole::initiator) return out;
  started_ = true;
  if (!write_handshake(out)) failed_ = true;
  return out;
}

Result<Ok, NoiseStreamError> NoiseStream::write_handshake(std::vector<uint8_t>& to_send) {
  // XX message 1 is sent in clear: it carries no payload. Messages 2 and 3 are encrypted
  // to the handshake's keys and carry each side's credential.
  bool first = role_ == NoiseRole::initiator && !wrote_first_;
  wrote_first_ = true;
  auto message = handshake_->write_message(first ? std::span<const uint8_t>{} : std::span<const uint8_t>(credential_));
  if (!message) return unexpected(NoiseStreamError::handshake_failed);
  append_framed(message.value(), to_send);
  if (handshake_->finished()) transport_.emplace(handshake_->split());
  return Ok{};
}

Result<Ok, NoiseStreamError> NoiseStream::fail(NoiseStreamError error) {
  failed_ = true;
  return unexpected(error);
}

Result<Ok, NoiseStreamError> NoiseStream::feed(std::span<const uint8_t> bytes, std::vector<uint8_t>& to_send,
                                               std::vector<uint8_t>& plaintext) {
  if (failed_) return unexpected(NoiseStreamError::forged);
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
  while (buffer_.size() - consumed_ >= 2) {
    size_t length = static_cast<size_t>(buffer_[consumed_]) << 8 | buffer_[consumed_ + 1];
    if (length == 0) return fail(NoiseStreamError::bad_length);
    if (buffer_.size() - consumed_ - 2 < length) break;
    std::span<const uint8_t> body(buffer_.data() + consumed_ + 2, length);
    consumed_ += 2 + length;
    if (auto read = read_body(body, to_send, plaintext); !read) return read;
  }
  // Keep the buffer from growing without bound while a large record trickles in.
  if (consumed_ > 0 && consumed_ >= buffer_.size() / 2) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
  }
  return Ok{};
}

Result<Ok, NoiseStreamError> NoiseStream::read_body(std::span<const uint8_t> body, std::vector<uint8_t>& to_send,
                                                    std::vector<uint8_t>& plaintext) {
  if (transport_) {
    if (!transport_->receive.decrypt({}, body, plaintext)) return fail(NoiseStreamError::forged);
    return Ok{};
  }
  if (handshake_->my_turn()) return fail(NoiseStreamError::handshake_failed);
  auto payload = handshake_->read_message(body);
  if (!payload) return fail(NoiseStreamError::handshake_failed);
  if (payload->size() > noise_stream_max_payload) return fail(NoiseStreamError::bad_payload);
  if (!payload->empty()) peer_credential_ = std::move(payload.value());
  if (handshake_->finished()) {
    transport_.emplace(handshake_->split());
    return Ok{};
  }
  if (auto written = write_handshake(to_send); !written) return fail(written.error());
  return Ok{};
}

Result<Ok, NoiseStreamError> NoiseStream::seal(std::span<const uint8_t> plaintext, std::vector<uint8_t>& out) {
  if (!transport_ || failed_) return unexpected(NoiseStreamError::not_established);
  while (!plaintext.empty()) {
    size_t n = std::min(plaintext.size(), noise_stream_max_plaintext);
    size_t header = out.size();
    out.push_back(0);
    out.push_back(0);
    if (!transport_->send.encrypt({}, plaintext.first(n), out)) return fail(NoiseStreamError::forged);
    size_t body = out.size() - header - 2;
    out[header] = static_cast<uint8_t>(body >> 8);
    out[header + 1] = static_cast<uint8_t>(body);
    plaintext = plaintext.subspan(n);
  }
  return Ok{};
}

}  // namespace roam::crypto
