// WhitelistFilter against the real lwIP (tests/support/lwip_lab.hpp): in whitelist mode a
// handshake from a source not on the list never reaches the listener (counted), a
// connection lwIP already has goes on, and a listed source connects; outside the mode
// nothing is filtered.
#include "stack/defense/whitelist_filter.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <vector>

#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::LabPeer;
using roam::testing::LwipLab;
using roam::testing::lab_port;

struct WhitelistLab {
  std::vector<std::unique_ptr<LabPeer>> accepted;  // A's ends
  LwipLab lab{4, [this](tcp_pcb* pcb) {
                auto peer = std::make_unique<LabPeer>();
                peer->connection = std::make_unique<TcpConnection>(pcb, peer.get());
                accepted.push_back(std::move(peer));
                return true;
              }};
  defense::SourceWhitelist list;
  std::unique_ptr<defense::WhitelistFilter> filter = std::make_unique<defense::WhitelistFilter>(*lab.node, list);

  ~WhitelistLab() {
    filter.reset();
    accepted.clear();
  }
  uint64_t now() { return uv_now(lab.node->loop()); }
};

TEST_CASE("whitelist mode drops new handshakes from unlisted sources, keeps existing connections") {
  WhitelistLab w;
  w.lab.connect([&w] { return w.accepted.size() == 1; });
  // The attack starts: whitelist mode, C not on the list (another client is).
  const std::vector<IpAddress> others = {*IpAddress::parse("198.18.99.2")};
  w.list.add(others);
  w.list.activate(w.now(), 600'000);
  // The established connection goes on: lwIP has its flow.
  w.lab.client.send("still here");
  w.lab.run([&w] { return w.accepted[0]->received.size() == 10; });
  CHECK(w.accepted[0]->received.size() == 10);
  CHECK(w.filter->counters().drops == 0);
  // A new connection from C: its SYN is dropped before lwIP (no SYN-ACK, nothing accepted).
  LabPeer second;
  auto c = TcpConnection::connect(w.lab.a(), lab_port, &second, &w.lab.c());
  REQUIRE(c);
  second.connection = std::move(c.value());
  w.lab.run([&w] { return w.filter->counters().drops >= 1; });
  CHECK(w.filter->counters().drops >= 1);
  w.lab.run([] { return false; }, 20);
  CHECK_FALSE(second.connected);
  CHECK(w.accepted.size() == 1);
  // C is ratified: its SYN's retransmission gets through.
  const std::vector<IpAddress> c_only = {w.lab.c()};
  w.list.add(c_only);
  w.lab.run([&] { return second.connected && w.accepted.size() == 2; });
  CHECK(second.connected);
  CHECK(w.accepted.size() == 2);
  CHECK(w.filter->counters().passed >= 1);
  second.connection.reset();
}

TEST_CASE("outside whitelist mode nothing is filtered") {
  WhitelistLab w;
  const std::vector<IpAddress> others = {*IpAddress::parse("198.18.99.2")};
  w.list.add(others);  // listed, but never activated
  w.lab.connect([&w] { return w.accepted.size() == 1; });
  CHECK(w.filter->counters().drops == 0);
  CHECK(w.filter->counters().passed == 0);
}

}  // namespace
