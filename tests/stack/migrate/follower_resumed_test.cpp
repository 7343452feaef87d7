// Follower::resumed_at (PROTOCOL.md 14.5): a connection the next server rebuilt from a
// checkpoint is re-pointed there; with the RESUMED's handover token it runs the NAT
// handover of section 6 first (its own output held until the SYN-ACK), without one it
// restarts at once. Against the real lwIP (tests/support/lwip_lab.hpp): the client's
// connection from C to A, whose server end is frozen (A "died"); nothing answers at B.
#include <doctest/doctest.h>

#include <memory>
#include <optional>

#include "crypto/handover_mac.hpp"
#include "stack/connection_id.hpp"
#include "stack/flow_key.hpp"
#include "stack/lwip_address.hpp"
#include "stack/migrate/follower.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::LabPeer;
using roam::testing::LwipLab;

struct DeadServerLab {
  std::unique_ptr<LabPeer> server;  // A's end
  LwipLab lab{4, [this](tcp_pcb* pcb) {
                server = std::make_unique<LabPeer>();
                server->connection = std::make_unique<TcpConnection>(pcb, server.get());
                return true;
              }};
  std::unique_ptr<Follower> follower;

  DeadServerLab() {
    follower = std::make_unique<Follower>(*lab.node, ChannelOptions{});
    lab.connect([this] { return server != nullptr; });
    migrate::freeze_pcb(server->connection->pcb());  // A is dead: its end says nothing more
  }
  ~DeadServerLab() {
    migrate::thaw_pcb(server->connection->pcb());
    follower->close();
    server.reset();
  }
  tcp_pcb* pcb() { return lab.client.connection->pcb(); }
};

}  // namespace

TEST_CASE("a resumed connection with a handover token sends the synthetic SYN and holds its output") {
  DeadServerLab d;
  REQUIRE(connection_id(d.pcb()) != 0);
  d.follower->resumed_at(d.pcb(), d.lab.b(), crypto::random_handover_token());
  CHECK(from_lwip(d.pcb()->remote_ip) == d.lab.b());
  CHECK(d.follower->handover().is_pending(flow_of(d.pcb())));
  CHECK(d.follower->handover().counters().handovers_started == 1);
  CHECK(d.follower->handover().counters().syns_sent >= 1);
  // The app writes: nothing of the connection's own may reach B (or a NAT) before the SYN-ACK.
  d.lab.client.send("after the resume");
  d.lab.run([&] { return d.follower->handover().counters().output_held > 0; }, 200);
  CHECK(d.follower->handover().counters().output_held > 0);
}

TEST_CASE("a resumed connection without a token is re-pointed and restarted at once") {
  DeadServerLab d;
  d.follower->resumed_at(d.pcb(), d.lab.b(), std::nullopt);
  CHECK(from_lwip(d.pcb()->remote_ip) == d.lab.b());
  CHECK_FALSE(d.follower->handover().is_pending(flow_of(d.pcb())));
  CHECK(d.follower->handover().counters().handovers_started == 0);
  CHECK(d.follower->counters().connections_moved == 1);
}
