// SOCKS5 parsing (RFC 1928/1929): known messages parse with their fields and length, every
// strict prefix of a valid message is incomplete (never malformed, never ok), bad versions,
// reserved bytes, empty or unprintable names and unknown address types are malformed with
// the right reply, and the encoders produce the RFC's bytes.
#include "stack/wire/socks5.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

using namespace roam::wire::socks5;
using Bytes = std::vector<uint8_t>;

Bytes prefix(const Bytes& bytes, size_t n) { return Bytes(bytes.begin(), bytes.begin() + static_cast<long>(n)); }

}  // namespace

TEST_CASE("socks5 greeting: methods offered, length, prefixes and bad input") {
  const Bytes both = {5, 2, 0, 2, 0xAA};  // trailing byte is not part of it
  auto g = parse_greeting(both);
  CHECK(g.status == Status::ok);
  CHECK(g.consumed == 4);
  CHECK(g.offers_no_auth);
  CHECK(g.offers_password);
  auto only_gssapi = parse_greeting(Bytes{5, 1, 1});
  CHECK(only_gssapi.status == Status::ok);
  CHECK_FALSE(only_gssapi.offers_no_auth);
  CHECK_FALSE(only_gssapi.offers_password);
  for (size_t n = 0; n < 4; ++n) CHECK(parse_greeting(prefix(both, n)).status == Status::incomplete);
  CHECK(parse_greeting(Bytes{4, 1, 0}).status == Status::malformed);  // SOCKS4
  CHECK(parse_greeting(Bytes{5, 0}).status == Status::malformed);     // no method
}

TEST_CASE("socks5 username/password subnegotiation") {
  const Bytes good = {1, 3, 'b', 'o', 'b', 2, 'p', 'w'};
  auto c = parse_credentials(good);
  REQUIRE(c.status == Status::ok);
  CHECK(c.consumed == good.size());
  CHECK(c.user == "bob");
  CHECK(c.password == "pw");
  for (size_t n = 0; n < good.size(); ++n) CHECK(parse_credentials(prefix(good, n)).status == Status::incomplete);
  auto empty_password = parse_credentials(Bytes{1, 1, 'a', 0});
  CHECK(empty_password.status == Status::ok);
  CHECK(empty_password.password.empty());
  CHECK(parse_credentials(Bytes{5, 1, 'a', 0}).status == Status::malformed);  // wrong version
  CHECK(parse_credentials(Bytes{1, 0, 0}).status == Status::malformed);       // empty user
}

TEST_CASE("socks5 CONNECT requests with IPv4, IPv6 and domain names") {
  const Bytes ipv4 = {5, 1, 0, 1, 198, 18, 12, 2, 0x1B, 0x58};
  auto r = parse_request(ipv4);
  REQUIRE(r.status == Status::ok);
  CHECK(r.consumed == 10);
  CHECK(r.command == 1);
  CHECK(r.address_type == AddressType::ipv4);
  CHECK(r.address.to_string() == "198.18.12.2");
  CHECK(r.port == 7000);
  for (size_t n = 0; n < ipv4.size(); ++n) CHECK(parse_request(prefix(ipv4, n)).status == Status::incomplete);

  Bytes ipv6 = {5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0x12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 80};
  auto r6 = parse_request(ipv6);
  REQUIRE(r6.status == Status::ok);
  CHECK(r6.consumed == 22);
  CHECK(r6.address.to_string() == "2001:db8:12::2");
  CHECK(r6.port == 80);

  Bytes domain = {5, 1, 0, 3, 8, 'w', 'e', 'b', '.', 'r', 'o', 'a', 'm', 0, 80, 0xEE};
  auto rd = parse_request(domain);
  REQUIRE(rd.status == Status::ok);
  CHECK(rd.consumed == 15);
  CHECK(rd.address_type == AddressType::domain);
  CHECK(rd.name == "web.roam");
  CHECK(rd.port == 80);
  for (size_t n = 0; n < 15; ++n) CHECK(parse_request(prefix(domain, n)).status == Status::incomplete);

  auto bind = parse_request(Bytes{5, 2, 0, 1, 1, 2, 3, 4, 0, 1});
  CHECK(bind.status == Status::ok);  // whole; the caller answers command_not_supported
  CHECK(bind.command == 2);
}

TEST_CASE("socks5 malformed requests name the reply to send") {
  auto bad_version = parse_request(Bytes{4, 1, 0, 1});
  CHECK(bad_version.status == Status::malformed);
  CHECK(bad_version.reply == Reply::general_failure);
  CHECK(parse_request(Bytes{5, 1, 7}).status == Status::malformed);  // reserved byte set
  auto atyp = parse_request(Bytes{5, 1, 0, 9});
  CHECK(atyp.status == Status::malformed);
  CHECK(atyp.reply == Reply::address_type_not_supported);
  CHECK(parse_request(Bytes{5, 1, 0, 3, 0, 0, 80}).status == Status::malformed);  // empty name
  // A name with a NUL or a space is refused as soon as it is all there.
  CHECK(parse_request(Bytes{5, 1, 0, 3, 3, 'a', 0, 'b'}).status == Status::malformed);
  CHECK(parse_request(Bytes{5, 1, 0, 3, 3, 'a', ' ', 'b', 0, 80}).status == Status::malformed);
}

TEST_CASE("socks5 answers encode to the RFC's bytes") {
  CHECK(encode_method(method_password) == std::array<uint8_t, 2>{5, 2});
  CHECK(encode_password_status(true) == std::array<uint8_t, 2>{1, 0});
  CHECK(encode_password_status(false)[1] != 0);
  auto bound = roam::IpAddress::parse("198.18.11.2").value();
  CHECK(encode_reply(Reply::succeeded, bound, 0x1234) == Bytes{5, 0, 0, 1, 198, 18, 11, 2, 0x12, 0x34});
  auto bound6 = roam::IpAddress::parse("2001:db8::1").value();
  auto reply6 = encode_reply(Reply::connection_refused, bound6, 0);
  CHECK(reply6.size() == 22);
  CHECK(reply6[1] == 5);
  CHECK(reply6[3] == 4);
}
