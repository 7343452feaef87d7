// TcpConnection::connect's local ports against the real lwIP: 4-tuples stay unique far
// beyond lwIP's own 16384-port range when connections go to different destinations, a
// destination whose ports are all in use fails at once with a clear error (no walk, no
// stall) while others go on, and ports come back when lwIP frees the pcbs.
#include "stack/tcp_connection.hpp"

#include <doctest/doctest.h>
#include <uv.h>

#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "stack/lwip_address.hpp"
#include "stack/node.hpp"
#include "support/fake_link.hpp"

namespace {

using namespace roam;

struct Idle final : TcpConnection::Handler {
  void on_data(TcpConnection&, PbufPtr) override {}
  void on_remote_closed(TcpConnection&) override {}
  void on_sent(TcpConnection&, size_t) override {}
  void on_error(TcpConnection&, err_t) override {}
};

// A node at 198.18.0.2/16 whose SYNs go nowhere (the loop never runs: no timers either).
struct Host {
  uv_loop_t loop{};
  std::unique_ptr<Node> node;
  Idle idle;
  std::vector<std::unique_ptr<TcpConnection>> connections;

  Host() {
    uv_loop_init(&loop);
    node = std::make_unique<Node>(&loop);
    InterfaceConfig config;
    config.address4 = *IpAddress::parse("198.18.0.2");
    config.prefix4 = 16;
    REQUIRE(node->add_interface(std::make_unique<testing::FakeLink>(), config));
  }
  ~Host() {
    // Newest first: each close unlinks the pcb at the head of lwIP's active list.
    while (!connections.empty()) connections.pop_back();
    node->close();
    uv_run(&loop, UV_RUN_NOWAIT);
    node.reset();
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
  }

  Result<std::unique_ptr<TcpConnection>, std::string> open(const IpAddress& to, uint16_t port) {
    return TcpConnection::connect(to, port, &idle);
  }
};

IpAddress server(int i) {
  return *IpAddress::parse("198.18.1." + std::to_string(i));
}

TEST_CASE("4-tuples stay unique beyond 16384 connections, and one full destination fails alone and cleanly") {
  Host host;
  size_t before = local_ports_in_use();
  const size_t range = local_port_range_size();
  REQUIRE(range > 16384);
  std::set<std::tuple<uint16_t, uint32_t, uint16_t>> tuples;  // local port, remote, remote port
  auto keep = [&](std::unique_ptr<TcpConnection> c) {
    tcp_pcb* pcb = c->pcb();
    CHECK(tuples.insert({pcb->local_port, ip_2_ip4(&pcb->remote_ip)->addr, pcb->remote_port}).second);
    host.connections.push_back(std::move(c));
  };

  // 20000 connections to four servers: more than lwIP's range held in all.
  for (int i = 0; i < 20000; ++i) {
    auto c = host.open(server(1 + i % 4), 7000);
    REQUIRE_MESSAGE(c, (c ? "" : c.error()));
    keep(std::move(c.value()));
  }
  // A fifth server takes every port there is: now ports are shared between servers.
  for (size_t i = 0; i < range; ++i) {
    auto c = host.open(server(9), 7000);
    REQUIRE_MESSAGE(c, (c ? "" : c.error()));
    keep(std::move(c.value()));
  }
  CHECK(tuples.size() == 20000 + range);
  CHECK(local_ports_in_use() == before + 20000 + range);

  // One more to the full server: refused at once, with a reason that names it.
  auto refused = host.open(server(9), 7000);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().find("no free local port toward 198.18.1.9:7000") != std::string::npos);
  CHECK(local_ports_in_use() == before + 20000 + range);
  // Other destinations go on: another server, and another port of the full one.
  auto other = host.open(server(1), 7000);
  REQUIRE(other);
  keep(std::move(other.value()));
  auto other_port = host.open(server(9), 7001);
  REQUIRE(other_port);
  keep(std::move(other_port.value()));

  // Closing gives the ports back (a SYN_SENT pcb is freed at once).
  host.connections.pop_back();
  host.connections.pop_back();
  host.connections.pop_back();  // one of server 9's port 7000 connections
  CHECK(local_ports_in_use() == before + 20000 + range - 1);
  auto again = host.open(server(9), 7000);
  CHECK(again);
}

TEST_CASE("ports return when connections end, whether closed or aborted") {
  Host host;
  size_t before = local_ports_in_use();
  for (int i = 0; i < 10; ++i) {
    auto c = host.open(server(2), 80);
    REQUIRE(c);
    host.connections.push_back(std::move(c.value()));
  }
  CHECK(local_ports_in_use() == before + 10);
  host.connections.back()->abort();
  host.connections.pop_back();
  host.connections.back()->close();
  host.connections.pop_back();
  CHECK(local_ports_in_use() == before + 8);
  host.connections.clear();
  CHECK(local_ports_in_use() == before);
}

}  // namespace
