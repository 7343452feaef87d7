#include "stack/wire/socks5.hpp"

#include <algorithm>

#include "stack/wire/byte_reader.hpp"

namespace roam::wire::socks5 {

Greeting parse_greeting(std::span<const uint8_t> bytes) {
  Greeting out;
  if (bytes.empty()) return out;
  if (bytes[0] != version) {
    out.status = Status::malformed;
    return out;
  }
  if (bytes.size() < 2) return out;
  size_t count = bytes[1];
  if (count == 0) {  // RFC 1928: at least one method
    out.status = Status::malformed;
    return out;
  }
  if (bytes.size() < 2 + count) return out;
  for (uint8_t method : bytes.subspan(2, count)) {
    out.offers_no_auth = out.offers_no_auth || method == method_no_auth;
    out.offers_password = out.offers_password || method == method_password;
  }
  out.status = Status::ok;
  out.consumed = 2 + count;
  return out;
}

Credentials parse_credentials(std::span<const uint8_t> bytes) {
  Credentials out;
  if (bytes.empty()) return out;
  if (bytes[0] != password_version) {
    out.status = Status::malformed;
    return out;
  }
  if (bytes.size() < 2) return out;
  size_t user_length = bytes[1];
  if (user_length == 0) {
    out.status = Status::malformed;
    return out;
  }
  if (bytes.size() < 3 + user_length) return out;
  size_t password_length = bytes[2 + user_length];
  size_t total = 3 + user_length + password_length;
  if (bytes.size() < total) return out;
  ByteReader reader(bytes.subspan(2));
  out.user = reader.text(user_length);
  reader.u8();
  out.password = reader.text(password_length);
  out.status = Status::ok;
  out.consumed = total;
  return out;
}

namespace {
Request malformed(Reply reply) {
  Request out;
  out.status = Status::malformed;
  out.reply = reply;
  return out;
}

bool printable_name(std::span<const uint8_t> name) {
  return std::all_of(name.begin(), name.end(), [](uint8_t c) { return c > 0x20 && c < 0x7F; });
}
}  // namespace

Request parse_request(std::span<const uint8_t> bytes) {
  Request out;
  if (bytes.empty()) return out;
  if (bytes[0] != version) return malformed(Reply::general_failure);
  if (bytes.size() >= 3 && bytes[2] != 0) return malformed(Reply::general_failure);
  if (bytes.size() < 4) return out;
  size_t address_length = 0;
  size_t address_offset = 4;
  switch (bytes[3]) {
    case static_cast<uint8_t>(AddressType::ipv4):
      address_length = 4;
      break;
    case static_cast<uint8_t>(AddressType::ipv6):
      address_length = 16;
      break;
    case static_cast<uint8_t>(AddressType::domain):
      if (bytes.size() < 5) return out;
      address_length = bytes[4];
      address_offset = 5;
      if (address_length == 0) return malformed(Reply::general_failure);
      break;
    default:
      return malformed(Reply::address_type_not_supported);
  }
  size_t total = address_offset + address_length + 2;
  if (bytes.size() < total) {
    // A name is checked as soon as it is all there, not only with its port.
    if (bytes[3] == static_cast<uint8_t>(AddressType::domain) && bytes.size() >= address_offset + address_length &&
        !printable_name(bytes.subspan(address_offset, address_length)))
      return malformed(Reply::general_failure);
    return out;
  }
  ByteReader reader(bytes.subspan(1, total - 1));
  out.command = reader.u8();
  reader.u8();
  out.address_type = static_cast<AddressType>(reader.u8());
  if (out.address_type == AddressType::domain) {
    reader.u8();
    auto name = reader.take(address_length);
    if (!printable_name(name)) return malformed(Reply::general_failure);
    out.name.assign(name.begin(), name.end());
  } else {
    out.address.version = out.address_type == AddressType::ipv4 ? 4 : 6;
    auto raw = reader.take(address_length);
    std::copy(raw.begin(), raw.end(), out.address.bytes.begin());
  }
  out.port = reader.u16();
  out.status = Status::ok;
  out.consumed = total;
  return out;
}

std::array<uint8_t, 2> encode_method(uint8_t method) { return {version, method}; }

std::array<uint8_t, 2> encode_password_status(bool accepted) {
  return {password_version, static_cast<uint8_t>(accepted ? 0x00 : 0x01)};
}

std::vector<uint8_t> encode_reply(Reply reply, const IpAddress& bound, uint16_t port) {
  std::vector<uint8_t> out(4 + bound.size() + 2);
  out[0] = version;
  out[1] = static_cast<uint8_t>(reply);
  out[3] = static_cast<uint8_t>(bound.version == 6 ? AddressType::ipv6 : AddressType::ipv4);
  std::copy_n(bound.bytes.begin(), bound.size(), out.begin() + 4);
  out[out.size() - 2] = static_cast<uint8_t>(port >> 8);
  out[out.size() - 1] = static_cast<uint8_t>(port & 0xFF);
  return out;
}

const char* reply_name(Reply reply) {
  switch (reply) {
    case Reply::succeeded: return "succeeded";
    case Reply::general_failure: return "general failure";
    case Reply::not_allowed: return "not allowed by ruleset";
    case Reply::network_unreachable: return "network unreachable";
    case Reply::host_unreachable: return "host unreachable";
    case Reply::connection_refused: return "connection refused";
    case Reply::ttl_expired: return "TTL expired";
    case Reply::command_not_supported: return "command not supported";
    case Reply::address_type_not_supported: return "address type not supported";
  }
  return "unknown";
}

}  // namespace roam::wire::socks5
