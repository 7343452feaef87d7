// Tests for tun/udp_peer_allowlist and the UdpLink's use of it: --udp-allow text, which
// sources a rule takes, and a real link on loopback that drops (and counts) a datagram from
// a sender its routes do not name while its route's peer gets through.
#include "tun/udp_peer_allowlist.hpp"

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <unistd.h>
#include <uv.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/socket_address.hpp"
#include "support/loopback_udp_socket.hpp"
#include "tun/udp_link.hpp"

namespace {

using roam::parse_udp_allow;

sockaddr_storage endpoint(const std::string& text) {
  sockaddr_storage addr{};
  socklen_t len = 0;
  REQUIRE(roam::parse_socket_address(text, addr, len));
  return addr;
}

sockaddr_storage mapped_v4(const char* v4, uint16_t port) {
  sockaddr_storage addr{};
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  v6->sin6_family = AF_INET6;
  v6->sin6_port = htons(port);
  REQUIRE(inet_pton(AF_INET6, (std::string("::ffff:") + v4).c_str(), &v6->sin6_addr) == 1);
  return addr;
}

using Socket = roam::testing::LoopbackUdpSocket;

// A minimal IPv4 header (20 bytes, protocol 6) from 198.18.11.2 to 198.18.12.2, then `tag`.
std::vector<uint8_t> ip_packet(uint8_t tag) {
  std::vector<uint8_t> p = {0x45, 0, 0, 21, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 11, 2, 198, 18, 12, 2, tag};
  return p;
}

}  // namespace

TEST_CASE("udp allow: the option's forms parse, bad text does not") {
  auto any = parse_udp_allow("any");
  REQUIRE(any);
  CHECK(any->any_peer);

  auto host = parse_udp_allow("127.0.0.1");
  REQUIRE(host);
  CHECK_FALSE(host->any_peer);
  CHECK(host->rule.prefix.length == 32);
  CHECK(host->rule.port == 0);

  auto net_port = parse_udp_allow("198.18.0.0/15:7000");
  REQUIRE(net_port);
  CHECK(net_port->rule.prefix.length == 15);
  CHECK(net_port->rule.port == 7000);

  auto v6 = parse_udp_allow("2001:db8::/32");
  REQUIRE(v6);
  CHECK(v6->rule.prefix.address.version == 6);
  CHECK(v6->rule.prefix.length == 32);
  CHECK(v6->rule.port == 0);

  auto v6_port = parse_udp_allow("[2001:db8::1]:9");
  REQUIRE(v6_port);
  CHECK(v6_port->rule.prefix.length == 128);
  CHECK(v6_port->rule.port == 9);

  auto v6_net_port = parse_udp_allow("[2001:db8::/48]:9");
  REQUIRE(v6_net_port);
  CHECK(v6_net_port->rule.prefix.length == 48);

  for (const char* bad : {"", "anyone", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", "1.2.3/8",
                          "198.18.0.0/33", "[2001:db8::1]:", "[2001:db8::1]x9", "[2001:db8::1", "host.example:7"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_udp_allow(bad));
  }
  CHECK(parse_udp_allow("[2001:db8::1]"));  // brackets without a port: any port
}

TEST_CASE("udp allow: an endpoint rule takes that address and port only") {
  roam::UdpPeerAllowlist peers;
  CHECK_FALSE(peers.allows(endpoint("127.0.0.1:7001")));  // nothing allowed yet
  peers.allow_endpoint(endpoint("127.0.0.1:7001"));
  peers.allow_endpoint(endpoint("127.0.0.1:7001"));  // a second route to the same peer
  CHECK(peers.describe() == "127.0.0.1:7001");
  CHECK(peers.allows(endpoint("127.0.0.1:7001")));
  CHECK(peers.allows(mapped_v4("127.0.0.1", 7001)));  // the same peer seen by a dual-stack socket
  CHECK_FALSE(peers.allows(endpoint("127.0.0.1:7002")));
  CHECK_FALSE(peers.allows(endpoint("127.0.0.2:7001")));
  CHECK_FALSE(peers.allows(endpoint("[::1]:7001")));

  auto rule = parse_udp_allow("198.18.0.0/15");
  REQUIRE(rule);
  peers.allow(rule->rule);
  CHECK(peers.allows(endpoint("198.19.255.1:1")));
  CHECK_FALSE(peers.allows(endpoint("198.20.0.1:1")));
  CHECK(peers.describe() == "127.0.0.1:7001, 198.18.0.0/15:*");

  peers.allow_any();
  CHECK(peers.allows(endpoint("203.0.113.9:4")));
  CHECK(peers.describe() == "any");
}

TEST_CASE("udp link: a datagram from a source the routes do not name is dropped and counted") {
  uv_loop_t loop;
  uv_loop_init(&loop);
  Socket peer;
  Socket stranger;
  {
    roam::UdpLinkConfig config;
    config.bind = endpoint("127.0.0.1:0");
    config.bind_len = sizeof(sockaddr_in);
    roam::UdpRoute route;
    route.prefix = *roam::IpPrefix::parse("198.18.11.0/24");
    route.endpoint = peer.address();
    route.endpoint_len = sizeof(sockaddr_in);
    config.routes.push_back(route);
    roam::UdpLink link(&loop, config);
    std::vector<std::vector<uint8_t>> received;
    REQUIRE(link.start([&](std::span<const roam::PacketView> batch) {
      for (auto packet : batch) received.emplace_back(packet.begin(), packet.end());
    }));
    auto to = link.local_address();

    // The stranger's packet goes first, so the peer's arrival proves the stranger's was read.
    stranger.send_to(to, ip_packet(1));
    peer.send_to(to, ip_packet(2));
    while (received.empty()) uv_run(&loop, UV_RUN_ONCE);

    REQUIRE(received.size() == 1);
    CHECK(received[0] == ip_packet(2));
    CHECK(link.counters().rx_foreign == 1);
    CHECK(link.counters().rx_dropped == 1);
    CHECK(link.counters().rx_packets == 1);
    CHECK(link.counters().rx_bytes == ip_packet(2).size());

    link.close();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  uv_loop_close(&loop);
}

TEST_CASE("udp link: --udp-allow lets another sender in; any lets everyone in") {
  for (bool any : {false, true}) {
    CAPTURE(any);
    uv_loop_t loop;
    uv_loop_init(&loop);
    Socket peer;
    Socket other;
    {
      roam::UdpLinkConfig config;
      config.bind = endpoint("127.0.0.1:0");
      config.bind_len = sizeof(sockaddr_in);
      roam::UdpRoute route;
      route.prefix = *roam::IpPrefix::parse("198.18.11.0/24");
      route.endpoint = peer.address();
      route.endpoint_len = sizeof(sockaddr_in);
      config.routes.push_back(route);
      if (any)
        config.allow_any_peer = true;
      else
        config.allow.push_back(parse_udp_allow("127.0.0.0/8")->rule);
      roam::UdpLink link(&loop, config);
      std::vector<std::vector<uint8_t>> received;
      REQUIRE(link.start([&](std::span<const roam::PacketView> batch) {
        for (auto packet : batch) received.emplace_back(packet.begin(), packet.end());
      }));
      other.send_to(link.local_address(), ip_packet(3));
      peer.send_to(link.local_address(), ip_packet(4));
      while (received.size() < 2) uv_run(&loop, UV_RUN_ONCE);
      CHECK(received[0] == ip_packet(3));
      CHECK(received[1] == ip_packet(4));
      CHECK(link.counters().rx_foreign == 0);
      link.close();
      uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&loop);
  }
}
