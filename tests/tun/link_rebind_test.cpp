// Tests for link rebinds (tun/link_rebind, tun/udp_roam_table, tun/link_rebinder, the
// LINK_KEY message): the datagram's layout and that it is never an IP packet, what the
// server's table does with good, forged, replayed, truncated and unknown rebinds (only a
// good one changes anything), the per-source rate limit, that a roamed endpoint speaks
// only for its own inner address, and a real UdpLink on loopback whose route follows a
// rebind from a new socket.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <unistd.h>
#include <uv.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/socket_address.hpp"
#include "stack/control/messages.hpp"
#include "tun/link_rebind.hpp"
#include "tun/link_rebinder.hpp"
#include "tun/udp_link.hpp"
#include "tun/udp_roam_table.hpp"

namespace {

using namespace roam;

sockaddr_storage endpoint(const std::string& text) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  REQUIRE(parse_socket_address(text, addr, len));
  return addr;
}

IpAddress ip(const char* text) {
  auto a = IpAddress::parse(text);
  REQUIRE(a);
  return *a;
}

IpPrefix prefix(const char* text) {
  auto p = IpPrefix::parse(text);
  REQUIRE(p);
  return *p;
}

LinkKey key_of(uint8_t fill) {
  LinkKey key{};
  key.fill(fill);
  return key;
}

// A minimal IPv4 header with this source (all the table reads).
std::vector<uint8_t> ipv4_from(const char* source, const char* destination = "198.18.1.1") {
  std::vector<uint8_t> packet(20, 0);
  packet[0] = 0x45;
  packet[3] = 20;
  REQUIRE(inet_pton(AF_INET, source, packet.data() + 12) == 1);
  REQUIRE(inet_pton(AF_INET, destination, packet.data() + 16) == 1);
  return packet;
}

bool same_endpoint(const sockaddr_storage* a, const sockaddr_storage& b) {
  return a != nullptr && format_socket_address(*a) == format_socket_address(b);
}

}  // namespace

TEST_CASE("link rebind: layout, never an IP packet, round trip") {
  auto key = key_of(7);
  auto v4 = encode_link_rebind(ip("198.18.50.2"), 0x0102030405060708ull, key);
  REQUIRE(v4.size() == 48);
  CHECK(v4[0] == 0x1A);
  CHECK((v4[0] >> 4) != 4);
  CHECK((v4[0] >> 4) != 6);
  CHECK(!IpAddress::source_of(v4));  // the stack could not take it for a packet either
  CHECK(v4[1] == 1);
  CHECK(v4[2] == 4);
  CHECK(v4[3] == 0);
  CHECK(std::vector<uint8_t>(v4.begin() + 4, v4.begin() + 8) == std::vector<uint8_t>{198, 18, 50, 2});
  CHECK(std::vector<uint8_t>(v4.begin() + 8, v4.begin() + 16) == std::vector<uint8_t>{1, 2, 3, 4, 5, 6, 7, 8});
  auto decoded = decode_link_rebind(v4);
  REQUIRE(decoded);
  CHECK(decoded->inner == ip("198.18.50.2"));
  CHECK(decoded->counter == 0x0102030405060708ull);
  CHECK(verify_link_rebind(v4, key));
  CHECK_FALSE(verify_link_rebind(v4, key_of(8)));

  auto v6 = encode_link_rebind(ip("2001:db8::5"), 9, key);
  REQUIRE(v6.size() == 60);
  auto decoded6 = decode_link_rebind(v6);
  REQUIRE(decoded6);
  CHECK(decoded6->inner == ip("2001:db8::5"));
  CHECK(decoded6->counter == 9);
  CHECK(verify_link_rebind(v6, key));

  // Every truncation and an extra byte are refused; so are a bad version and reserved byte.
  for (size_t n = 0; n < v4.size(); ++n) CHECK_FALSE(decode_link_rebind(std::span(v4).first(n)));
  auto longer = v4;
  longer.push_back(0);
  CHECK_FALSE(decode_link_rebind(longer));
  for (size_t at : {size_t{1}, size_t{2}, size_t{3}}) {
    auto bad = v4;
    bad[at] ^= 0x10;
    CHECK_FALSE(decode_link_rebind(bad));
  }
  // Any flipped bit breaks the MAC.
  for (size_t at = 4; at < v4.size(); ++at) {
    auto bad = v4;
    bad[at] ^= 1;
    CHECK_FALSE(verify_link_rebind(bad, key));
  }
}

TEST_CASE("link key message: round trip, truncation refused") {
  control::LinkKeyGrant grant{ip("198.18.50.2"), {}};
  grant.key.fill(3);
  auto bytes = control::encode_message(grant);
  CHECK(bytes.size() == 1 + 1 + 4 + 32);
  CHECK(bytes[0] == 6);
  auto decoded = control::decode_message(bytes);
  REQUIRE(decoded);
  CHECK(std::get<control::LinkKeyGrant>(decoded.value()) == grant);
  for (size_t n = 0; n < bytes.size(); ++n) CHECK_FALSE(control::decode_message(std::span(bytes).first(n)));
  bytes.push_back(0);
  CHECK_FALSE(control::decode_message(bytes));
  control::LinkKeyGrant grant6{ip("2001:db8::7"), {}};
  auto decoded6 = control::decode_message(control::encode_message(grant6));
  REQUIRE(decoded6);
  CHECK(std::get<control::LinkKeyGrant>(decoded6.value()) == grant6);
}

TEST_CASE("udp roam table: only a valid, fresh rebind for a known inner address moves it") {
  UdpRoamTable table({prefix("198.18.50.0/24")});
  const auto client = ip("198.18.50.2");
  const auto key = key_of(1);
  const auto old_path = endpoint("198.18.0.9:40000");
  const auto new_path = endpoint("198.18.0.9:40123");
  uint64_t now = 1000;

  CHECK_FALSE(table.set_key(ip("198.18.51.2"), key));  // outside --udp-roam
  CHECK_FALSE(table.issue_key(ip("198.18.51.2")));
  // No key yet: unknown, nothing changes.
  CHECK(table.on_rebind(encode_link_rebind(client, 5, key), old_path, now) == RebindVerdict::unknown);
  CHECK(table.endpoint_for(client) == nullptr);

  REQUIRE(table.set_key(client, key));
  CHECK(table.on_rebind(encode_link_rebind(client, 5, key), old_path, now) == RebindVerdict::applied);
  CHECK(same_endpoint(table.endpoint_for(client), old_path));
  CHECK(table.on_rebind(encode_link_rebind(client, 6, key), old_path, now) == RebindVerdict::unchanged);

  // Wrong key, replayed and older counters, truncated, another inner address: dropped,
  // counted, and the endpoint stays.
  CHECK(table.on_rebind(encode_link_rebind(client, 100, key_of(2)), new_path, now) == RebindVerdict::forged);
  auto captured = encode_link_rebind(client, 6, key);
  CHECK(table.on_rebind(captured, new_path, now) == RebindVerdict::replayed);
  CHECK(table.on_rebind(encode_link_rebind(client, 3, key), new_path, now) == RebindVerdict::replayed);
  CHECK(table.on_rebind(std::span(captured).first(20), new_path, now) == RebindVerdict::malformed);
  CHECK(table.on_rebind(encode_link_rebind(ip("198.18.50.3"), 100, key), new_path, now) == RebindVerdict::unknown);
  CHECK(same_endpoint(table.endpoint_for(client), old_path));
  const auto& c = table.counters();
  CHECK(c.rebinds_forged == 1);
  CHECK(c.rebinds_replayed == 2);
  CHECK(c.rebinds_malformed == 1);
  CHECK(c.rebinds_unknown == 2);
  CHECK(c.rebinds_applied == 1);

  // A NAT rebind: the next rebind from the new endpoint moves the route, and the old
  // endpoint is no longer taken.
  CHECK(table.on_rebind(encode_link_rebind(client, 7, key), new_path, now) == RebindVerdict::applied);
  CHECK(same_endpoint(table.endpoint_for(client), new_path));
  CHECK(table.allows(new_path, ipv4_from("198.18.50.2")));
  CHECK_FALSE(table.allows(old_path, ipv4_from("198.18.50.2")));
  // The endpoint speaks for its own inner address, and for addresses of the prefixes no
  // endpoint proved (a client whose inner address changed), never outside them.
  CHECK_FALSE(table.allows(new_path, ipv4_from("198.18.51.3")));
  CHECK(table.allows(new_path, ipv4_from("198.18.50.3")));
  CHECK(table.counters().rx_wrong_inner == 1);

  // A new key (the client's channel reconnected) starts over: the old key's rebinds fail.
  auto fresh = table.issue_key(client);
  REQUIRE(fresh);
  CHECK(*fresh != key);
  CHECK(table.on_rebind(encode_link_rebind(client, 8, key), old_path, now) == RebindVerdict::forged);
  CHECK(table.on_rebind(encode_link_rebind(client, 1, *fresh), old_path, now) == RebindVerdict::applied);
  CHECK(same_endpoint(table.endpoint_for(client), old_path));
  CHECK_FALSE(table.allows(new_path, ipv4_from("198.18.50.2")));
}

TEST_CASE("udp roam table: an endpoint moved to another client is no longer the first one's") {
  UdpRoamTable table({prefix("198.18.50.0/24")});
  const auto a = ip("198.18.50.2");
  const auto b = ip("198.18.50.3");
  REQUIRE(table.set_key(a, key_of(1)));
  REQUIRE(table.set_key(b, key_of(2)));
  const auto shared = endpoint("198.18.0.9:40000");
  CHECK(table.on_rebind(encode_link_rebind(a, 1, key_of(1)), shared, 0) == RebindVerdict::applied);
  CHECK(table.on_rebind(encode_link_rebind(b, 1, key_of(2)), shared, 0) == RebindVerdict::applied);
  CHECK(table.endpoint_for(a) == nullptr);
  CHECK(same_endpoint(table.endpoint_for(b), shared));
  CHECK(table.allows(shared, ipv4_from("198.18.50.3")));
  // a proves another endpoint: the shared one may no longer speak for it.
  const auto own = endpoint("198.18.0.9:40001");
  CHECK(table.on_rebind(encode_link_rebind(a, 2, key_of(1)), own, 0) == RebindVerdict::applied);
  CHECK_FALSE(table.allows(shared, ipv4_from("198.18.50.2")));
  CHECK(table.allows(own, ipv4_from("198.18.50.2")));
  CHECK_FALSE(table.allows(own, ipv4_from("198.18.50.3")));
}

TEST_CASE("udp roam table: verification work is rate-limited per source address") {
  UdpRoamTable table({prefix("198.18.50.0/24")});
  const auto client = ip("198.18.50.2");
  REQUIRE(table.set_key(client, key_of(1)));
  const auto flooder = endpoint("198.18.7.7:1000");
  auto forged = encode_link_rebind(client, 1, key_of(9));
  size_t forged_seen = 0;
  for (int i = 0; i < 100; ++i)
    if (table.on_rebind(forged, flooder, 5000) == RebindVerdict::forged) ++forged_seen;
  CHECK(forged_seen == static_cast<size_t>(UdpRoamTable::source_burst));
  CHECK(table.counters().rebinds_rate_limited == 100 - forged_seen);
  // Another source is not held back by the flood, and the client's own rebind works.
  CHECK(table.on_rebind(encode_link_rebind(client, 2, key_of(1)), endpoint("198.18.0.9:40000"), 5000) ==
        RebindVerdict::applied);
  // The flooder's budget refills with time (the caller's clock).
  CHECK(table.on_rebind(forged, flooder, 6000) == RebindVerdict::forged);
  CHECK(table.endpoint_for(client) != nullptr);
}

TEST_CASE("link rebinder: counters strictly increase, keys are replaced, failures counted") {
  std::vector<std::vector<uint8_t>> sent;
  bool route = true;
  LinkRebinder rebinder([&](const IpAddress& server, std::span<const uint8_t> datagram) {
    CHECK(server == ip("198.18.60.1"));
    if (!route) return false;
    sent.emplace_back(datagram.begin(), datagram.end());
    return true;
  });
  CHECK(rebinder.send_all(1000) == 0);  // no key yet: nothing to say
  rebinder.set_key(ip("198.18.60.1"), ip("198.18.50.2"), key_of(4));
  CHECK(rebinder.send_all(1000) == 1);
  CHECK(rebinder.send_all(1000) == 1);  // the clock did not move: one more
  CHECK(rebinder.send_all(500) == 1);   // the clock went back: still one more
  CHECK(rebinder.send_to(ip("198.18.60.1"), 2000) == 1);
  CHECK(rebinder.send_to(ip("198.18.60.9"), 2000) == 0);
  REQUIRE(sent.size() == 4);
  std::vector<uint64_t> counters;
  for (const auto& datagram : sent) {
    auto decoded = decode_link_rebind(datagram);
    REQUIRE(decoded);
    CHECK(decoded->inner == ip("198.18.50.2"));
    CHECK(verify_link_rebind(datagram, key_of(4)));
    counters.push_back(decoded->counter);
  }
  CHECK(counters == std::vector<uint64_t>{1000, 1001, 1002, 2000});
  // Everything it sends, a table with the same key takes in order.
  UdpRoamTable table({prefix("198.18.50.0/24")});
  REQUIRE(table.set_key(ip("198.18.50.2"), key_of(4)));
  for (const auto& datagram : sent) {
    auto verdict = table.on_rebind(datagram, endpoint("198.18.0.9:40000"), 0);
    CHECK((verdict == RebindVerdict::applied || verdict == RebindVerdict::unchanged));
  }
  route = false;
  CHECK(rebinder.send_all(3000) == 0);
  CHECK(rebinder.counters().send_failed == 1);
  CHECK(rebinder.counters().sent == 4);
}

TEST_CASE("udp link: a valid rebind from a new socket moves the route; a forged one does not") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  int old_socket = socket(AF_INET, SOCK_DGRAM, 0);
  int new_socket = socket(AF_INET, SOCK_DGRAM, 0);
  int forger = socket(AF_INET, SOCK_DGRAM, 0);
  auto local = endpoint("127.0.0.1:0");
  for (int fd : {old_socket, new_socket, forger})
    REQUIRE(bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof(sockaddr_in)) == 0);
  auto name_of = [](int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return addr;
  };
  {
    UdpLinkConfig config;
    config.bind = endpoint("127.0.0.1:0");
    config.bind_len = sizeof(sockaddr_in);
    UdpRoute route;
    route.prefix = prefix("198.18.50.0/24");
    route.endpoint = name_of(old_socket);
    route.endpoint_len = sizeof(sockaddr_in);
    config.routes.push_back(route);
    config.roam = std::make_shared<UdpRoamTable>(std::vector<IpPrefix>{prefix("198.18.50.0/24")});
    REQUIRE(config.roam->set_key(ip("198.18.50.2"), key_of(5)));
    UdpLink link(&loop, config);
    std::vector<std::vector<uint8_t>> received;
    REQUIRE(link.start([&](std::span<const PacketView> batch) {
      for (const auto& p : batch) received.emplace_back(p.begin(), p.end());
    }));
    auto link_address = link.local_address();
    auto send_from = [&](int fd, const std::vector<uint8_t>& bytes) {
      REQUIRE(sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&link_address),
                     sizeof(sockaddr_in)) == static_cast<ssize_t>(bytes.size()));
    };
    const auto& roam = *link.roam();
    // A forged rebind changes nothing; the route still names the old socket.
    send_from(forger, encode_link_rebind(ip("198.18.50.2"), 10, key_of(6)));
    while (roam.counters().rebinds < 1) uv_run(&loop, UV_RUN_ONCE);
    CHECK(roam.counters().rebinds_forged == 1);
    CHECK(format_socket_address(*link.endpoint_for(ip("198.18.50.2"))) == format_socket_address(name_of(old_socket)));
    // The new socket's packets are foreign until it proves itself.
    send_from(new_socket, ipv4_from("198.18.50.2"));
    send_from(new_socket, encode_link_rebind(ip("198.18.50.2"), 11, key_of(5)));
    send_from(new_socket, ipv4_from("198.18.50.2"));
    while (roam.counters().rebinds < 2 || received.empty()) uv_run(&loop, UV_RUN_ONCE);
    CHECK(roam.counters().rebinds_applied == 1);
    CHECK(received.size() == 1);  // the packet after the rebind, not the one before
    CHECK(link.counters().rx_foreign == 1);
    CHECK(format_socket_address(*link.endpoint_for(ip("198.18.50.2"))) == format_socket_address(name_of(new_socket)));
    // Packets for the client now go to the new socket.
    auto reply = ipv4_from("198.18.60.1", "198.18.50.2");
    link.send(reply);
    link.flush();
    std::vector<uint8_t> buffer(64);
    timeval timeout{5, 0};  // a hang bound, not a timing assertion
    setsockopt(new_socket, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    CHECK(recv(new_socket, buffer.data(), buffer.size(), 0) == static_cast<ssize_t>(reply.size()));
    link.close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  for (int fd : {old_socket, new_socket, forger}) close(fd);
  uv_loop_close(&loop);
}

TEST_CASE("link rebind: the PROTOCOL.md 3.8 example (computed with Python's hmac, SHA-512 cut to 32 bytes)") {
  LinkKey key{};
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(i + 1);
  auto datagram = encode_link_rebind(ip("198.18.50.2"), 0x0005f0a1b2c3d4e5ull, key);
  static const char* want =
      "1a010400c61232020005f0a1b2c3d4e5b8a600af6082ac8a1721a3a47f10899e86de8405a0a48291c7711895f76773a0";
  std::string hex;
  for (uint8_t b : datagram) {
    static const char digits[] = "0123456789abcdef";
    hex += digits[b >> 4];
    hex += digits[b & 15];
  }
  CHECK(hex == want);
}
