#include "stack/control/messages.hpp"

#include <algorithm>
#include <cstring>

#include "stack/wire/byte_reader.hpp"
#include "stack/wire/byte_writer.hpp"

namespace roam::control {

namespace {

using wire::ByteReader;

using wire::put_u16;
using wire::put_u32;
using wire::put_u64;
using wire::put_u8;

void put_bytes(std::vector<uint8_t>& out, const uint8_t* data, size_t size) {
  wire::put_bytes(out, std::span<const uint8_t>(data, size));
}

bool valid_host_id(const std::string& id) {
  if (id.empty() || id.size() > max_host_id) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<Message, MessageError> decode_acm(ByteReader& r) {
  AddressChange m;
  m.sequence = r.u64();
  auto nonce = r.take(16);
  if (!nonce.empty()) std::memcpy(m.nonce.data(), nonce.data(), 16);
  m.issued_at_ms = r.u64();
  uint8_t scope = r.u8();
  uint8_t family = r.u8();
  if (r.failed()) return unexpected(MessageError::truncated);
  if (scope < 1 || scope > 3) return unexpected(MessageError::bad_field);
  if (family != 4 && family != 6) return unexpected(MessageError::bad_field);
  m.scope = static_cast<AcmScope>(scope);
  size_t address_bytes = family == 4 ? 4 : 16;
  m.old_address.version = m.new_address.version = family;
  auto old_address = r.take(address_bytes);
  auto new_address = r.take(address_bytes);
  m.old_port = r.u16();
  m.new_port = r.u16();
  uint16_t count = r.u16();
  if (r.failed()) return unexpected(MessageError::truncated);
  std::memcpy(m.old_address.bytes.data(), old_address.data(), address_bytes);
  std::memcpy(m.new_address.bytes.data(), new_address.data(), address_bytes);
  if (count > max_connection_ids) return unexpected(MessageError::oversized);
  if (m.scope == AcmScope::connections ? count == 0 : count != 0)
    return unexpected(MessageError::bad_field);
  if (r.remaining() < size_t{count} * 8) return unexpected(MessageError::truncated);
  m.connection_ids.reserve(count);
  for (uint16_t i = 0; i < count; ++i) m.connection_ids.push_back(r.u64());
  uint8_t token_length = r.u8();
  if (r.failed()) return unexpected(MessageError::truncated);
  if (token_length != 0 && token_length != handover_token_bytes) return unexpected(MessageError::bad_field);
  // A transfer notification moves no connection: nothing to hand over.
  if (m.scope == AcmScope::transfer && token_length != 0) return unexpected(MessageError::bad_field);
  if (token_length != 0) {
    auto token = r.take(token_length);
    if (r.failed()) return unexpected(MessageError::truncated);
    m.handover_token.emplace();
    std::memcpy(m.handover_token->data(), token.data(), token_length);
  }
  auto credential = r.take(r.u8());
  if (r.failed()) return unexpected(MessageError::truncated);
  m.target_credential.assign(credential.begin(), credential.end());
  if (m.old_address == m.new_address && (m.new_port == 0 || m.new_port == m.old_port))
    return unexpected(MessageError::bad_field);  // a move to where it already is
  return Message{std::move(m)};
}

}  // namespace

const char* message_error_name(MessageError error) {
  switch (error) {
    case MessageError::truncated:
      return "truncated";
    case MessageError::trailing_bytes:
      return "trailing bytes";
    case MessageError::unknown_type:
      return "unknown message type";
    case MessageError::bad_field:
      return "field out of range";
    case MessageError::oversized:
      return "too many entries";
  }
  return "unknown message error";
}

std::vector<uint8_t> encode_message(const Message& message) {
  std::vector<uint8_t> out;
  // One allocation up front (the largest fixed part is an IPv6 ACM's 73 bytes, or a HELLO's
  // host id or an ERROR's text, each at most 255); this also keeps GCC 12 at -O3 from a
  // false -Wstringop-overflow on the vector's growth path.
  size_t ids = 0;
  if (const auto* acm = std::get_if<AddressChange>(&message)) ids = acm->connection_ids.size();
  if (const auto* reg = std::get_if<RegisterConnections>(&message)) ids = reg->connection_ids.size();
  size_t sealed = 0;
  if (const auto* push = std::get_if<CheckpointPush>(&message)) sealed = push->sealed.size();
  if (const auto* resume = std::get_if<ResumeRequest>(&message)) sealed = resume->sealed.size();
  out.reserve(600 + ids * 8 + sealed);
  if (const auto* hello = std::get_if<Hello>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::hello));
    put_u16(out, hello->version);
    put_u8(out, static_cast<uint8_t>(hello->host_id.size()));
    put_bytes(out, reinterpret_cast<const uint8_t*>(hello->host_id.data()), hello->host_id.size());
    put_u32(out, hello->capabilities);
    put_u8(out, static_cast<uint8_t>(hello->credential.size()));
    put_bytes(out, hello->credential.data(), hello->credential.size());
  } else if (const auto* acm = std::get_if<AddressChange>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::acm));
    put_u64(out, acm->sequence);
    put_bytes(out, acm->nonce.data(), acm->nonce.size());
    put_u64(out, acm->issued_at_ms);
    put_u8(out, static_cast<uint8_t>(acm->scope));
    put_u8(out, acm->old_address.version);
    put_bytes(out, acm->old_address.bytes.data(), acm->old_address.size());
    put_bytes(out, acm->new_address.bytes.data(), acm->new_address.size());
    put_u16(out, acm->old_port);
    put_u16(out, acm->new_port);
    put_u16(out, static_cast<uint16_t>(acm->connection_ids.size()));
    for (uint64_t id : acm->connection_ids) put_u64(out, id);
    put_u8(out, acm->handover_token ? static_cast<uint8_t>(handover_token_bytes) : 0);
    if (acm->handover_token) put_bytes(out, acm->handover_token->data(), acm->handover_token->size());
    put_u8(out, static_cast<uint8_t>(acm->target_credential.size()));
    put_bytes(out, acm->target_credential.data(), acm->target_credential.size());
  } else if (const auto* ack = std::get_if<Ack>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::ack));
    put_u64(out, ack->sequence);
    put_u8(out, static_cast<uint8_t>(ack->status));
  } else if (const auto* error = std::get_if<ErrorMessage>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::error));
    put_u16(out, error->code);
    put_u8(out, static_cast<uint8_t>(error->text.size()));
    put_bytes(out, reinterpret_cast<const uint8_t*>(error->text.data()), error->text.size());
  } else if (const auto* reg = std::get_if<RegisterConnections>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::register_connections));
    put_u16(out, static_cast<uint16_t>(reg->connection_ids.size()));
    for (uint64_t id : reg->connection_ids) put_u64(out, id);
  } else if (const auto* grant = std::get_if<LinkKeyGrant>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::link_key));
    put_u8(out, grant->inner.version);
    put_bytes(out, grant->inner.bytes.data(), grant->inner.size());
    put_bytes(out, grant->key.data(), grant->key.size());
  } else if (const auto* update = std::get_if<RoamUpdate>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::roam_update));
    encode_roam_update_body(*update, out);
  } else if (const auto* push = std::get_if<CheckpointPush>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::checkpoint));
    put_u16(out, static_cast<uint16_t>(push->sealed.size()));
    put_bytes(out, push->sealed.data(), push->sealed.size());
  } else if (const auto* resume = std::get_if<ResumeRequest>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::resume));
    put_u64(out, resume->connection_id);
    put_u32(out, resume->rcv_nxt);
    put_u32(out, resume->snd_una);
    put_u32(out, resume->snd_nxt);
    put_u16(out, static_cast<uint16_t>(resume->sealed.size()));
    put_bytes(out, resume->sealed.data(), resume->sealed.size());
  } else if (const auto* answer = std::get_if<ResumeAnswer>(&message)) {
    put_u8(out, static_cast<uint8_t>(MessageType::resumed));
    put_u64(out, answer->connection_id);
    put_u64(out, answer->generation);
    put_u8(out, static_cast<uint8_t>(answer->status));
    put_u8(out, answer->reason);
    put_u8(out, answer->handover_token ? static_cast<uint8_t>(handover_token_bytes) : 0);
    if (answer->handover_token) put_bytes(out, answer->handover_token->data(), answer->handover_token->size());
  }
  return out;
}

Result<Message, MessageError> decode_message(std::span<const uint8_t> bytes) {
  ByteReader r(bytes);
  uint8_t type = r.u8();
  if (r.failed()) return unexpected(MessageError::truncated);
  Result<Message, MessageError> result = unexpected(MessageError::unknown_type);
  switch (type) {
    case static_cast<uint8_t>(MessageType::hello): {
      Hello m;
      m.version = r.u16();
      m.host_id = r.text(r.u8());
      m.capabilities = r.u32();
      auto credential = r.take(r.u8());
      if (r.failed()) return unexpected(MessageError::truncated);
      m.credential.assign(credential.begin(), credential.end());
      if (m.version == 0 || !valid_host_id(m.host_id)) return unexpected(MessageError::bad_field);
      result = Message{std::move(m)};
      break;
    }
    case static_cast<uint8_t>(MessageType::acm):
      result = decode_acm(r);
      break;
    case static_cast<uint8_t>(MessageType::ack): {
      Ack m;
      m.sequence = r.u64();
      uint8_t status = r.u8();
      if (r.failed()) return unexpected(MessageError::truncated);
      if (status > 2) return unexpected(MessageError::bad_field);
      m.status = static_cast<AckStatus>(status);
      result = Message{m};
      break;
    }
    case static_cast<uint8_t>(MessageType::error): {
      ErrorMessage m;
      m.code = r.u16();
      m.text = r.text(r.u8());
      if (r.failed()) return unexpected(MessageError::truncated);
      result = Message{std::move(m)};
      break;
    }
    case static_cast<uint8_t>(MessageType::register_connections): {
      RegisterConnections m;
      uint16_t count = r.u16();
      if (r.failed()) return unexpected(MessageError::truncated);
      if (count == 0) return unexpected(MessageError::bad_field);
      if (count > max_connection_ids) return unexpected(MessageError::oversized);
      if (r.remaining() < size_t{count} * 8) return unexpected(MessageError::truncated);
      m.connection_ids.reserve(count);
      for (uint16_t i = 0; i < count; ++i) m.connection_ids.push_back(r.u64());
      if (std::find(m.connection_ids.begin(), m.connection_ids.end(), 0) != m.connection_ids.end())
        return unexpected(MessageError::bad_field);
      result = Message{std::move(m)};
      break;
    }
    case static_cast<uint8_t>(MessageType::link_key): {
      LinkKeyGrant m;
      uint8_t family = r.u8();
      if (r.failed()) return unexpected(MessageError::truncated);
      if (family != 4 && family != 6) return unexpected(MessageError::bad_field);
      m.inner.version = family;
      auto address = r.take(m.inner.size());
      auto key = r.take(link_key_bytes);
      if (r.failed()) return unexpected(MessageError::truncated);
      std::memcpy(m.inner.bytes.data(), address.data(), m.inner.size());
      std::memcpy(m.key.data(), key.data(), link_key_bytes);
      result = Message{m};
      break;
    }
    case static_cast<uint8_t>(MessageType::roam_update): {
      auto update = decode_roam_update_body(r);
      if (!update)
        return unexpected(update.error() == RoamUpdateError::truncated ? MessageError::truncated : MessageError::bad_field);
      result = Message{std::move(*update)};
      break;
    }
    case static_cast<uint8_t>(MessageType::checkpoint): {
      CheckpointPush m;
      auto sealed = r.take(r.u16());
      if (r.failed()) return unexpected(MessageError::truncated);
      if (sealed.empty() || sealed.size() > max_sealed_bytes) return unexpected(MessageError::bad_field);
      m.sealed.assign(sealed.begin(), sealed.end());
      result = Message{std::move(m)};
      break;
    }
    case static_cast<uint8_t>(MessageType::resume): {
      ResumeRequest m;
      m.connection_id = r.u64();
      m.rcv_nxt = r.u32();
      m.snd_una = r.u32();
      m.snd_nxt = r.u32();
      auto sealed = r.take(r.u16());
      if (r.failed()) return unexpected(MessageError::truncated);
      if (m.connection_id == 0 || sealed.empty() || sealed.size() > max_sealed_bytes)
        return unexpected(MessageError::bad_field);
      // The client cannot have sent less than it had acknowledged.
      if (static_cast<int32_t>(m.snd_nxt - m.snd_una) < 0) return unexpected(MessageError::bad_field);
      m.sealed.assign(sealed.begin(), sealed.end());
      result = Message{std::move(m)};
      break;
    }
    case static_cast<uint8_t>(MessageType::resumed): {
      ResumeAnswer m;
      m.connection_id = r.u64();
      m.generation = r.u64();
      uint8_t status = r.u8();
      m.reason = r.u8();
      uint8_t token_length = r.u8();
      if (r.failed()) return unexpected(MessageError::truncated);
      if (m.connection_id == 0 || status > 1) return unexpected(MessageError::bad_field);
      // As in an ACM: no token, or one of 32 bytes; a refusal rebuilt nothing to hand over.
      if (token_length != 0 && (token_length != handover_token_bytes || status != 0))
        return unexpected(MessageError::bad_field);
      if (token_length != 0) {
        auto token = r.take(token_length);
        if (r.failed()) return unexpected(MessageError::truncated);
        m.handover_token.emplace();
        std::memcpy(m.handover_token->data(), token.data(), token_length);
      }
      m.status = static_cast<ResumeStatus>(status);
      // resumed carries no reason; refused always one (1..12 or 32..34).
      bool known = (m.reason >= 1 && m.reason <= 12) || (m.reason >= resume_reason_not_enabled && m.reason <= resume_reason_max);
      if (m.status == ResumeStatus::resumed ? m.reason != resume_reason_none : !known)
        return unexpected(MessageError::bad_field);
      result = Message{m};
      break;
    }
    default:
      return unexpected(MessageError::unknown_type);
  }
  if (!result) return result;
  if (r.remaining() != 0) return unexpected(MessageError::trailing_bytes);
  return result;
}

}  // namespace roam::control
