#include "stack/control/channel.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "stack/wire/byte_reader.hpp"
#include "stack/wire/byte_writer.hpp"

namespace roam::control {

namespace {

void append_framed(std::span<const uint8_t> body, std::vector<uint8_t>& out) {
  wire::put_u16(out, static_cast<uint16_t>(body.size()));
  out.insert(out.end(), body.begin(), body.end());
}

}  // namespace

const char* channel_error_name(ChannelError error) {
  switch (error) {
    case ChannelError::bad_length:
      return "bad frame length";
    case ChannelError::handshake_failed:
      return "handshake failed";
    case ChannelError::bad_hello:
      return "bad hello";
    case ChannelError::forged:
      return "frame did not authenticate";
    case ChannelError::replayed:
      return "replayed or stale frame";
    case ChannelError::bad_message:
      return "undecodable message";
    case ChannelError::not_established:
      return "handshake not finished";
  }
  return "unknown channel error";
}

bool channel_error_is_fatal(ChannelError error) {
  return error == ChannelError::bad_length || error == ChannelError::handshake_failed ||
         error == ChannelError::bad_hello;
}

ControlChannel::ControlChannel(crypto::NoisePattern pattern, crypto::NoiseRole role, const crypto::IdentityKey& local,
                               Hello hello, std::optional<crypto::PublicKey> remote_static)
    : pattern_(pattern), role_(role), hello_(std::move(hello)) {
  const auto* prologue = reinterpret_cast<const uint8_t*>(channel_prologue);
  handshake_.emplace(pattern, role, local, std::span<const uint8_t>(prologue, sizeof(channel_prologue) - 1),
                     remote_static);
}

std::vector<uint8_t> ControlChannel::start() {
  std::vector<uint8_t> out;
  if (started_ || role_ != crypto::NoiseRole::initiator) return out;
  started_ = true;
  if (!write_handshake(out)) failed_ = true;
  return out;
}

Result<Ok, ChannelError> ControlChannel::write_handshake(std::vector<uint8_t>& to_send) {
  // XX's first message travels in clear: our HELLO waits for an encrypted one.
  bool clear = pattern_ == crypto::NoisePattern::xx && role_ == crypto::NoiseRole::initiator && handshake_writes_ == 0;
  std::vector<uint8_t> payload = clear ? std::vector<uint8_t>{} : encode_message(hello_);
  auto message = handshake_->write_message(payload);
  if (!message) return unexpected(ChannelError::handshake_failed);
  append_framed(message.value(), to_send);
  ++handshake_writes_;
  return Ok{};
}

void ControlChannel::feed(std::span<const uint8_t> bytes) {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

Result<std::optional<ControlChannel::Event>, ChannelError> ControlChannel::fail(ChannelError error) {
  failed_ = true;
  return unexpected(error);
}

Result<std::optional<ControlChannel::Event>, ChannelError> ControlChannel::next(std::vector<uint8_t>& to_send) {
  if (failed_) return std::optional<Event>{};
  size_t available = buffer_.size() - consumed_;
  if (available < channel_length_bytes) return std::optional<Event>{};
  const uint8_t* at = buffer_.data() + consumed_;
  size_t length = (size_t{at[0]} << 8) | at[1];
  if (length == 0) return fail(ChannelError::bad_length);
  if (available < channel_length_bytes + length) return std::optional<Event>{};
  std::span<const uint8_t> body(at + channel_length_bytes, length);
  consumed_ += channel_length_bytes + length;
  ++counters_.frames_in;
  if (!established()) return read_handshake(body, to_send);
  return read_transport(body);
}

Result<std::optional<ControlChannel::Event>, ChannelError> ControlChannel::read_handshake(
    std::span<const uint8_t> body, std::vector<uint8_t>& to_send) {
  if (handshake_->my_turn()) return fail(ChannelError::handshake_failed);  // the peer spoke out of turn
  auto payload = handshake_->read_message(body);
  if (!payload) return fail(ChannelError::handshake_failed);
  if (!payload.value().empty()) {
    auto hello = decode_message(payload.value());
    if (!hello || !std::holds_alternative<Hello>(hello.value())) return fail(ChannelError::bad_hello);
    peer_hello_ = std::get<Hello>(hello.value());
    if (peer_hello_.version != protocol_version) return fail(ChannelError::bad_hello);
    have_peer_hello_ = true;
  }
  if (!handshake_->finished()) {
    if (!write_handshake(to_send)) return fail(ChannelError::handshake_failed);
  }
  if (!handshake_->finished()) return next(to_send);
  if (!have_peer_hello_) return fail(ChannelError::bad_hello);
  transport_ = handshake_->split();
  handshake_.reset();
  return std::optional<Event>{Event{true, {}}};
}

Result<std::optional<ControlChannel::Event>, ChannelError> ControlChannel::read_transport(
    std::span<const uint8_t> body) {
  if (body.size() < channel_counter_bytes + crypto::noise_tag_bytes) {
    ++counters_.forged;
    return unexpected(ChannelError::forged);
  }
  uint64_t counter = wire::ByteReader(body).u64();
  std::vector<uint8_t> plain;
  if (!transport_->receive.decrypt_with_nonce(counter, body.first(channel_counter_bytes),
                                              body.subspan(channel_counter_bytes), plain)) {
    ++counters_.forged;
    return unexpected(ChannelError::forged);
  }
  if (!replay_.accept(counter)) {
    ++counters_.replayed;
    return unexpected(ChannelError::replayed);
  }
  auto message = decode_message(plain);
  if (!message) {
    ++counters_.bad_messages;
    return unexpected(ChannelError::bad_message);
  }
  ++counters_.messages_in;
  return std::optional<Event>{Event{false, std::move(message.value())}};
}

Result<std::vector<uint8_t>, ChannelError> ControlChannel::seal(const Message& message) {
  if (!established() || failed_) return unexpected(ChannelError::not_established);
  auto plain = encode_message(message);
  // The frame is built in place: length (filled in last), counter, ciphertext and tag.
  std::vector<uint8_t> out;
  out.reserve(channel_length_bytes + channel_counter_bytes + plain.size() + crypto::noise_tag_bytes);
  wire::put_u16(out, 0);
  wire::put_u64(out, transport_->send.nonce());
  std::array<uint8_t, channel_counter_bytes> counter;
  std::copy(out.begin() + channel_length_bytes, out.end(), counter.begin());
  if (!transport_->send.encrypt(counter, plain, out)) return unexpected(ChannelError::not_established);
  const size_t body = out.size() - channel_length_bytes;
  out[0] = static_cast<uint8_t>(body >> 8);
  out[1] = static_cast<uint8_t>(body);
  ++counters_.messages_out;
  return out;
}

}  // namespace roam::control
