// Sessions with several legs (a proxy's client leg and origin leg) moved by the engine
// without processes: the Exporter at A captures every leg into one session frame, the
// Importer at B imports them all (the origin leg with B's address as its local address)
// or none, and a failure on any leg leaves every leg on its old path. All hosts share the
// lwIP lab: the client and the origin both sit at C, the proxy moves from A to B.
#include <doctest/doctest.h>

#include <memory>
#include <optional>
#include <vector>

#include "apps/echo_app.hpp"
#include "stack/connection_id.hpp"
#include "stack/lwip_address.hpp"
#include "stack/migrate/exporter.hpp"
#include "stack/migrate/importer.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "support/engine_fakes.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::LabPeer;
using roam::testing::LwipLab;
using roam::testing::pattern;

constexpr uint16_t origin_port = 7100;

// A proxy's session reduced to what the engine sees: a client leg and an origin leg, each
// echoing what it receives (enough to show both connections whole after a move).
class PairSession final : public MovableSession {
 public:
  PairSession(std::unique_ptr<EchoSession> client, std::unique_ptr<EchoSession> origin)
      : client_(std::move(client)), origin_(std::move(origin)) {}
  ~PairSession() override = default;

  const char* kind() const override { return "pair"; }
  std::vector<SessionLeg> legs() const override {
    return {{client_->pcb(), LegRole::client}, {origin_->pcb(), LegRole::origin}};
  }
  bool movable() const override { return client_->movable() && origin_->movable(); }
  void freeze() override {
    client_->freeze();
    origin_->freeze();
  }
  void thaw() override {
    client_->thaw();
    origin_->thaw();
  }
  std::vector<uint8_t> leg_received(size_t leg) const override { return of(leg).received_unconsumed(); }
  std::vector<uint8_t> leg_app_state(size_t leg) const override {
    // Above the snapshot's 1 MiB bound: the origin leg cannot be captured.
    if (leg == 1 && oversized_origin_state) return std::vector<uint8_t>((1u << 20) + 1);
    return of(leg).app_state();
  }
  std::vector<tcp_pcb*> release_legs() override { return {client_->release_pcb(), origin_->release_pcb()}; }
  void close() override {
    client_->close();
    origin_->close();
  }

  bool oversized_origin_state = false;

 private:
  const EchoSession& of(size_t leg) const { return leg == 0 ? *client_ : *origin_; }
  std::unique_ptr<EchoSession> client_;
  std::unique_ptr<EchoSession> origin_;
};

void no_finish(EchoSession*) {}

struct ProxyLab {
  std::unique_ptr<EchoSession> accepted;  // the client leg, until the pair is built
  LwipLab lab{4, [this](tcp_pcb* pcb) {
                accepted = std::make_unique<EchoSession>(*lab.node, EchoSession::Mode::echo, pcb, no_finish);
                return true;
              }};
  roam::testing::FakeSessionTable table;
  roam::testing::FakeClientDirectory directory;
  roam::testing::LoopbackTransfer link;
  std::unique_ptr<migrate::Importer> importer;   // B's
  migrate::MigrationGuard old_guard{*lab.node};  // A's
  LabPeer origin;                                // the origin server, at C
  std::unique_ptr<TcpListener> origin_listener;
  LabPeer opener;  // the proxy's active open to the origin, until the pair is built
  bool refuse_pairs = false;
  std::vector<migrate::OriginLegMoved> told;
  std::optional<migrate::ExportReport> report;

  ProxyLab() {
    table.kinds_.add("pair", [this](std::vector<ImportedLeg> legs, MovableSession::FinishedFn,
                                    std::string& error) -> std::unique_ptr<MovableSession> {
      if (refuse_pairs) {
        error = "the test refuses this pair";
        return nullptr;
      }
      if (legs.size() != 2 || legs[0].role != LegRole::client || legs[1].role != LegRole::origin) {
        error = "a pair is a client leg and an origin leg";
        return nullptr;
      }
      auto client = EchoSession::import(*lab.node, EchoSession::Mode::echo, legs[0].pcb, std::move(legs[0].received),
                                        legs[0].app_state, no_finish, error);
      if (!client) return nullptr;
      auto origin_leg = EchoSession::import(*lab.node, EchoSession::Mode::echo, legs[1].pcb,
                                            std::move(legs[1].received), legs[1].app_state, no_finish, error);
      if (!origin_leg) {
        client->release_pcb();  // untouched: the importer frees it
        return nullptr;
      }
      return std::make_unique<PairSession>(std::move(client), std::move(origin_leg));
    });
    migrate::ImportConfig config;
    config.address4 = lab.b();
    importer = std::make_unique<migrate::Importer>(*lab.node, table, config);
    importer->set_tell_origin([this](const migrate::OriginLegMoved& moved) { told.push_back(moved); });
    link.importer = importer.get();
    link.node = lab.node.get();

    auto listening = TcpListener::listen(origin_port, [this](tcp_pcb* pcb) {
      origin.connection = std::make_unique<TcpConnection>(pcb, &origin);
      return true;
    });
    REQUIRE(listening);
    origin_listener = std::move(listening.value());
    lab.connect([this] { return accepted != nullptr; });
    // The proxy at A opens its origin leg to C.
    auto opened = TcpConnection::connect(lab.c(), origin_port, &opener, &lab.a());
    REQUIRE(opened);
    opener.connection = std::move(opened.value());
    lab.run([this] { return opener.connected && origin.connection != nullptr; });
    REQUIRE(opener.connected);
    auto origin_leg = std::make_unique<EchoSession>(*lab.node, EchoSession::Mode::echo,
                                                    opener.connection->release(), no_finish);
    table.adopt(std::make_unique<PairSession>(std::move(accepted), std::move(origin_leg)));
  }
  ~ProxyLab() {
    importer->shutdown();
    for (auto* s : table.sessions()) s->close();
    // A reset leaves no TIME_WAIT on the origin's port for the next test's listener.
    if (origin.connection && origin.connection->alive()) origin.connection->abort();
    origin.connection.reset();
    origin_listener.reset();
    lab.run([] { return false; }, 50);
  }

  PairSession& pair() { return *static_cast<PairSession*>(table.sessions().front()); }
  tcp_pcb* client_pcb() { return lab.client.connection->pcb(); }
  tcp_pcb* origin_pcb() { return origin.connection->pcb(); }

  migrate::ExportReport move() {
    report.reset();
    migrate::ExportPolicy policy;
    policy.handover = false;  // the client follows by rewriting its pcb, as the Follower does
    migrate::Exporter exporter({*lab.node, table, old_guard, directory, nullptr}, policy, "b", table.sessions(),
                               uv_now(lab.node->loop()), [this](const migrate::ExportReport& r) { report = r; });
    exporter.start(link);
    link.deliver(exporter);
    REQUIRE(report.has_value());
    return *report;
  }

  // Sends `size` bytes from the client and from the origin and runs until both got their
  // echo back: both legs carry a stream.
  void exchange(size_t size, uint32_t seed) {
    auto to_client = pattern(size, seed);
    auto to_origin = pattern(size, seed + 1);
    size_t client_before = lab.client.received.size();
    size_t origin_before = origin.received.size();
    lab.client.send(to_client);
    origin.send(to_origin);
    lab.run([&] {
      return lab.client.received.size() >= client_before + size && origin.received.size() >= origin_before + size;
    });
    REQUIRE(lab.client.received.size() == client_before + size);
    REQUIRE(origin.received.size() == origin_before + size);
    CHECK(std::equal(to_client.begin(), to_client.end(), lab.client.received.begin() + client_before));
    CHECK(std::equal(to_origin.begin(), to_origin.end(), origin.received.begin() + origin_before));
  }
};

TEST_CASE("a two-leg session moves whole: the origin leg takes the new host's address and both streams go on") {
  ProxyLab p;
  p.exchange(32 << 10, 1);
  FlowKey client_leg_before = flow_of(p.pair().legs()[0].pcb);
  FlowKey origin_leg_before = flow_of(p.pair().legs()[1].pcb);
  uint64_t client_id = connection_id(p.pair().legs()[0].pcb);
  uint64_t origin_id = connection_id(p.pair().legs()[1].pcb);
  REQUIRE(origin_leg_before.local == p.lab.a());

  auto report = p.move();
  CHECK(report.ok());
  CHECK(report.moved == 1);
  REQUIRE(report.sessions.size() == 1);
  REQUIRE(report.sessions[0].legs.size() == 2);
  CHECK(report.sessions[0].legs[1].role == LegRole::origin);
  CHECK(report.new_address == p.lab.b());
  // Only the client leg is announced to a client; the new host tells the origin.
  REQUIRE(p.directory.announced.size() == 1);
  CHECK(p.directory.announced[0].connection_id == client_id);
  REQUIRE(p.told.size() == 1);
  CHECK(p.told[0].connection_id == origin_id);
  CHECK(p.told[0].old_flow == origin_leg_before);
  CHECK(p.told[0].new_flow.local == p.lab.b());
  CHECK(p.told[0].new_flow.local_port == origin_leg_before.local_port);
  CHECK(p.told[0].new_flow.remote == p.lab.c());
  CHECK(p.importer->counters().sessions_imported == 1);
  CHECK(p.importer->counters().legs_imported == 2);
  CHECK(p.importer->guard().parked_count() == 2);

  // Both pcbs exist at B, the origin leg's local address rewritten from A to B.
  REQUIRE(p.table.sessions().size() == 1);
  auto legs = p.table.sessions().front()->legs();
  REQUIRE(legs.size() == 2);
  REQUIRE(legs[0].pcb != nullptr);
  REQUIRE(legs[1].pcb != nullptr);
  CHECK(from_lwip(legs[0].pcb->local_ip) == p.lab.b());
  CHECK(legs[0].pcb->local_port == client_leg_before.local_port);
  CHECK(from_lwip(legs[1].pcb->local_ip) == p.lab.b());
  CHECK(legs[1].pcb->local_port == origin_leg_before.local_port);
  CHECK(from_lwip(legs[1].pcb->remote_ip) == p.lab.c());
  CHECK(connection_id(legs[1].pcb) == origin_id);

  // The peers follow: the client as the Follower does after the ACM, the origin as it
  // will when the tell-origin hook reaches it (issue 12).
  tcp_pcb* client_end = p.client_pcb();
  tcp_pcb* origin_end = p.origin_pcb();
  migrate::rewrite_remote(std::span(&client_end, 1), p.lab.b(), 0);
  migrate::rewrite_remote(std::span(&origin_end, 1), p.told[0].new_flow.local, p.told[0].new_flow.local_port);
  p.exchange(64 << 10, 3);
  CHECK(p.importer->guard().parked_count() == 0);
  CHECK(p.importer->parked_count() == 0);
  CHECK(p.lab.rst_seen == 0);
  CHECK(find_active_pcb(p.told[0].new_flow) == legs[1].pcb);
}

TEST_CASE("a two-leg session whose legs cannot all be captured stays whole at the old host") {
  ProxyLab p;
  p.exchange(16 << 10, 5);
  p.pair().oversized_origin_state = true;
  auto legs = p.pair().legs();
  auto report = p.move();
  CHECK(report.moved == 0);
  CHECK(report.failed == 1);
  REQUIRE(report.sessions.size() == 1);
  CHECK(report.sessions[0].reason.find("origin leg") != std::string::npos);
  CHECK(p.link.payloads.empty());  // nothing was sent
  for (const auto& leg : legs) {
    CHECK_FALSE(p.old_guard.is_silenced(flow_of(leg.pcb)));
    CHECK(find_active_pcb(flow_of(leg.pcb)) == leg.pcb);  // thawed: back in lwIP
  }
  p.pair().oversized_origin_state = false;
  p.exchange(32 << 10, 7);
  CHECK(p.lab.rst_seen == 0);
}

TEST_CASE("a two-leg session refused at its second leg leaves nothing at the new host and goes on at the old one") {
  ProxyLab p;
  p.exchange(16 << 10, 9);
  auto legs = p.pair().legs();
  FlowKey client_leg_at_b = flow_of(legs[0].pcb);
  client_leg_at_b.local = p.lab.b();
  FlowKey origin_leg_at_b = flow_of(legs[1].pcb);
  origin_leg_at_b.local = p.lab.b();
  auto nothing_at_b = [&] {
    CHECK(p.importer->parked_count() == 0);
    CHECK(p.importer->guard().parked_count() == 0);
    CHECK_FALSE(p.importer->guard().is_parked(client_leg_at_b));
    CHECK_FALSE(p.importer->guard().is_parked(origin_leg_at_b));
    CHECK(find_active_pcb(client_leg_at_b) == nullptr);
    CHECK(find_active_pcb(origin_leg_at_b) == nullptr);
    CHECK(p.table.sessions().size() == 1);  // A's own
    CHECK(p.importer->counters().sessions_imported == 0);
    CHECK(p.told.empty());
  };

  SUBCASE("the kind refuses the legs after both were imported") {
    p.refuse_pairs = true;
    auto report = p.move();
    CHECK(report.failed == 1);
    CHECK(report.sessions[0].reason == "the test refuses this pair");
    CHECK(p.importer->counters().imports_refused == 1);
    nothing_at_b();
  }

  SUBCASE("the second leg's snapshot fails a check before anything is built") {
    p.link.refuse_all = true;  // only to capture the frame A sends
    REQUIRE(p.move().failed == 1);
    REQUIRE(p.link.payloads.size() == 1);
    auto payload = migrate::decode_session_payload(p.link.payloads[0]);
    REQUIRE(payload);
    REQUIRE(payload->legs.size() == 2);
    auto origin = wire::decode_snapshot(payload->legs[1].snapshot);
    REQUIRE(origin);
    auto client = wire::decode_snapshot(payload->legs[0].snapshot);
    REQUIRE(client);
    auto with_origin_id = [&](uint64_t id) {
      auto changed = *origin;
      changed.connection_id = id;
      auto bytes = wire::encode_snapshot(changed);
      auto copy = *payload;
      copy.legs[1].snapshot = bytes;
      return p.importer->import_session(migrate::encode_session_payload(copy), uv_now(p.lab.node->loop()));
    };
    auto no_id = with_origin_id(0);
    REQUIRE_FALSE(no_id);
    CHECK(no_id.error() == "leg 1 (origin): connection id 0 (none)");
    CHECK(p.importer->counters().refused_no_id == 1);
    auto same_id = with_origin_id(client->connection_id);
    REQUIRE_FALSE(same_id);
    CHECK(same_id.error() == "leg 1 (origin): two legs with one connection id");
    CHECK(p.importer->counters().refused_duplicate == 1);
    CHECK(p.importer->counters().imports_refused == 2);
  }
  nothing_at_b();
  p.exchange(32 << 10, 11);
  CHECK(p.lab.rst_seen == 0);
}

TEST_CASE("a two-leg import whose origin is never told is closed when it expires, after its client came") {
  ProxyLab p;
  p.importer->set_tell_origin({});  // what happens until issue 12 tells origins
  auto report = p.move();
  REQUIRE(report.moved == 1);
  CHECK(p.importer->counters().origin_legs_untold == 1);
  tcp_pcb* client_end = p.client_pcb();
  migrate::rewrite_remote(std::span(&client_end, 1), p.lab.b(), 0);
  p.lab.run([&] { return p.importer->guard().parked_count() == 1; });
  CHECK(p.importer->guard().parked_count() == 1);  // the origin leg
  CHECK(p.importer->parked_count() == 1);
  uint64_t now = uv_now(p.lab.node->loop());
  p.importer->on_time(now + 60'000);
  CHECK(p.importer->counters().parked_expired == 1);
  CHECK(p.importer->parked_count() == 0);
  CHECK(p.importer->guard().parked_count() == 0);
  p.lab.run([&] { return p.lab.client.remote_closed || p.lab.client.failed; });
  CHECK((p.lab.client.remote_closed || p.lab.client.failed));
}

}  // namespace
