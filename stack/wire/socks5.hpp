// SOCKS version 5 (RFC 1928) and its username/password method (RFC 1929), as pure
// functions over untrusted bytes: the parsers for what a SOCKS client sends roam-client's
// -D port, and the encoders of the answers. Each parser looks at the bytes received so
// far and says whether they hold a whole message (and how many bytes it took), need more,
// or cannot be one. Nothing here reads outside its input. Any thread.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/ip_address.hpp"

namespace roam::wire::socks5 {

constexpr uint8_t version = 5;
constexpr uint8_t method_no_auth = 0x00;
constexpr uint8_t method_password = 0x02;
constexpr uint8_t method_none_acceptable = 0xFF;
constexpr uint8_t password_version = 1;  // RFC 1929's subnegotiation version

enum class Status {
  incomplete,  // a prefix of a valid message: read more
  ok,          // a whole message, `consumed` bytes long
  malformed,   // no valid message starts with these bytes
};

// RFC 1928 reply codes.
enum class Reply : uint8_t {
  succeeded = 0x00,
  general_failure = 0x01,
  not_allowed = 0x02,
  network_unreachable = 0x03,
  host_unreachable = 0x04,
  connection_refused = 0x05,
  ttl_expired = 0x06,
  command_not_supported = 0x07,
  address_type_not_supported = 0x08,
};

enum class Command : uint8_t { connect = 0x01, bind = 0x02, udp_associate = 0x03 };
enum class AddressType : uint8_t { ipv4 = 0x01, domain = 0x03, ipv6 = 0x04 };

// VER NMETHODS METHODS...: which of the two methods we speak the client offers.
struct Greeting {
  Status status = Status::incomplete;
  size_t consumed = 0;
  bool offers_no_auth = false;
  bool offers_password = false;
};
Greeting parse_greeting(std::span<const uint8_t> bytes);

// RFC 1929: VER(1) ULEN UNAME PLEN PASSWD (ULEN >= 1; PLEN may be 0).
struct Credentials {
  Status status = Status::incomplete;
  size_t consumed = 0;
  std::string user;
  std::string password;
};
Credentials parse_credentials(std::span<const uint8_t> bytes);

// VER CMD RSV ATYP DST.ADDR DST.PORT. `malformed` carries the reply to send in `reply`:
// general_failure (bad version, reserved byte, empty or unprintable name) or
// address_type_not_supported (an unknown ATYP: the rest cannot even be measured).
// A whole request with another command than CONNECT is `ok`; the caller answers
// command_not_supported.
struct Request {
  Status status = Status::incomplete;
  size_t consumed = 0;
  Reply reply = Reply::succeeded;  // when malformed: what to answer
  uint8_t command = 0;
  AddressType address_type = AddressType::ipv4;
  IpAddress address;  // ipv4 / ipv6
  std::string name;   // domain: 1..255 printable ASCII characters
  uint16_t port = 0;
};
Request parse_request(std::span<const uint8_t> bytes);

// The method selection message: VER METHOD.
std::array<uint8_t, 2> encode_method(uint8_t method);
// RFC 1929's answer: VER STATUS (0 success, anything else failure).
std::array<uint8_t, 2> encode_password_status(bool accepted);
// VER REP RSV ATYP BND.ADDR BND.PORT, with the bound address `bound` (IPv4 or IPv6).
std::vector<uint8_t> encode_reply(Reply reply, const IpAddress& bound, uint16_t port);

// The longest message of each kind, so a reader knows when to give up buffering.
constexpr size_t max_greeting = 2 + 255;
constexpr size_t max_credentials = 3 + 255 + 255;
constexpr size_t max_request = 4 + 1 + 255 + 2;

const char* reply_name(Reply reply);

}  // namespace roam::wire::socks5
