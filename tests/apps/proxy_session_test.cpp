// ProxySession against the real lwIP, inside one LwipLab: the client at C connects to the
// proxy at A (the client leg), the proxy opens its origin leg from A to an origin peer at C.
// The splice carries both streams byte-exact, holds what the far side cannot take (its
// window stays shut, nothing piles up), forwards half-closes both ways, turns a reset on
// one leg into a reset of the other, and moves whole to B (held bytes included) through
// the Exporter and Importer with kind "proxy".
#include "apps/proxy_session.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/lwip_address.hpp"
#include "stack/migrate/exporter.hpp"
#include "stack/migrate/importer.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "support/engine_fakes.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::LwipLab;
using roam::testing::pattern;

constexpr uint16_t origin_port = 7100;

// A peer that can stop reading: received bytes are kept and their window stays shut
// until `reading` is set again (a slow reader at the far end).
struct Peer final : TcpConnection::Handler {
  std::unique_ptr<TcpConnection> connection;
  std::vector<uint8_t> to_send;
  size_t sent_offset = 0;
  std::vector<uint8_t> received;
  size_t unconsumed = 0;
  bool reading = true;
  bool shut_after_sending = false;
  bool shut = false;
  bool remote_closed = false;
  bool failed = false;
  err_t error = ERR_OK;

  void pump() {
    if (!connection || !connection->alive()) return;
    if (reading && unconsumed > 0) {
      connection->consumed(unconsumed);
      unconsumed = 0;
    }
    if (sent_offset < to_send.size())
      sent_offset += connection->write({to_send.data() + sent_offset, to_send.size() - sent_offset});
    if (shut_after_sending && !shut && sent_offset == to_send.size()) {
      shut = true;
      connection->shutdown_write();
    }
    connection->flush();
  }
  void send(const std::vector<uint8_t>& bytes) {
    to_send.insert(to_send.end(), bytes.begin(), bytes.end());
    pump();
  }
  void on_data(TcpConnection&, PbufPtr data) override {
    append_pbuf(received, *data);
    unconsumed += data->tot_len;
    pump();
  }
  void on_remote_closed(TcpConnection&) override { remote_closed = true; }
  void on_sent(TcpConnection&, size_t) override { pump(); }
  void on_error(TcpConnection&, err_t e) override {
    failed = e != ERR_CLSD;  // ERR_CLSD: our FIN was acknowledged after the peer's, a clean end
    error = e;
  }
};

struct ProxyLab {
  tcp_pcb* accepted = nullptr;  // the client leg, until the session is built
  LwipLab lab{4, [this](tcp_pcb* pcb) {
                accepted = pcb;
                tcp_arg(pcb, nullptr);  // lwIP holds its data (ERR_MEM) until a handler takes it
                return true;
              }};
  Peer client;
  Peer origin;
  std::unique_ptr<TcpListener> origin_listener;
  roam::testing::FakeSessionTable table;
  bool finished = false;

  ProxyLab() {
    add_proxy_session_kind(table.kinds_, *lab.node);
    auto listening = TcpListener::listen(origin_port, [this](tcp_pcb* pcb) {
      origin.connection = std::make_unique<TcpConnection>(pcb, &origin);
      return true;
    });
    REQUIRE(listening);
    origin_listener = std::move(listening.value());
    auto opened = TcpConnection::connect(lab.a(), roam::testing::lab_port, &client, &lab.c());
    REQUIRE(opened);
    client.connection = std::move(opened.value());
    lab.run([this] { return accepted != nullptr; });
    REQUIRE(accepted != nullptr);
    auto session = std::make_unique<ProxySession>(*lab.node, accepted, [this](MovableSession*) { finished = true; });
    ProxySession* raw = session.get();
    table.adopt(std::move(session));
    auto leg = TcpConnection::connect(lab.c(), origin_port, raw, &lab.a());
    REQUIRE(leg);
    raw->attach_origin(std::move(leg.value()));
    lab.run([&] { return origin.connection != nullptr && proxy().movable(); });
    REQUIRE(proxy().movable());
  }
  ~ProxyLab() {
    for (auto* s : table.sessions()) s->close();
    lab.run([] { return false; }, 20);
    table.owned.clear();
    // Resets leave no TIME_WAIT on the origin's port for the next test's listener.
    for (Peer* peer : {&client, &origin})
      if (peer->connection && peer->connection->alive()) peer->connection->abort();
    client.connection.reset();
    origin.connection.reset();
    origin_listener.reset();
    lab.run([] { return false; }, 20);
    // A clean close leaves TIME_WAIT pcbs (the proxy's end of the client leg on the lab's
    // port among them) that would outlive the lab and keep the next one from listening.
    while (tcp_tw_pcbs != nullptr) tcp_abort(tcp_tw_pcbs);
  }

  ProxySession& proxy() { return *static_cast<ProxySession*>(table.sessions().front()); }

  void run_until(const std::function<bool()>& done) { lab.run(done); }
  // Runs until the streams stall: nothing sent, held or received changed for 100 rounds
  // in a row (each idle round waits for lwIP's next timer).
  void settle() {
    std::array<size_t, 6> last{};
    int unchanged = 0;
    lab.run([&] {
      std::array<size_t, 6> now{client.sent_offset,  origin.sent_offset,
                                client.received.size(), origin.received.size(),
                                proxy().held(ProxySession::client_leg), proxy().held(ProxySession::origin_leg)};
      unchanged = now == last ? unchanged + 1 : 0;
      last = now;
      return unchanged >= 100;
    });
  }
};

// The stream offsets a checkpoint names (PROTOCOL.md 14.8.1): down counts from the client
// leg's send point `snd_lbb`, up from its `rcv_nxt`, both relative to where they were at
// `start` (the client leg's sequence numbers then).
struct SequenceMark {
  uint32_t snd_lbb = 0;
  uint32_t rcv_nxt = 0;
  uint64_t down = 0;
  uint64_t up = 0;
};
SequenceMark mark(ProxySession& session) {
  const tcp_pcb* client = session.legs()[ProxySession::client_leg].pcb;
  auto offsets = session.offsets();
  REQUIRE(offsets);
  return {client->snd_lbb, client->rcv_nxt, offsets->down, offsets->up};
}
void check_offsets_follow_sequence(ProxySession& session, const SequenceMark& start) {
  SequenceMark now = mark(session);
  CHECK(now.down - start.down == static_cast<uint32_t>(now.snd_lbb - start.snd_lbb));
  CHECK(now.up - start.up == static_cast<uint32_t>(now.rcv_nxt - start.rcv_nxt));
}

TEST_CASE("a proxy session carries both streams byte-exact") {
  ProxyLab p;
  SequenceMark start = mark(p.proxy());
  CHECK(start.down == 0);
  CHECK(start.up == 0);
  auto up = pattern(3 << 20, 1);
  auto down = pattern(3 << 20, 2);
  p.client.send(up);
  p.origin.send(down);
  p.run_until([&] { return p.origin.received.size() >= up.size() && p.client.received.size() >= down.size(); });
  CHECK(p.origin.received == up);
  CHECK(p.client.received == down);
  CHECK(p.proxy().held(ProxySession::client_leg) == 0);
  CHECK(p.proxy().held(ProxySession::origin_leg) == 0);
  CHECK(p.lab.rst_seen == 0);
  // Everything crossed: the offsets are the stream lengths, and they name the client
  // leg's sequence points; the checkpoint state names the origin leg's connection.
  CHECK(p.proxy().offsets() == ProxyStreamOffsets{down.size(), up.size()});
  check_offsets_follow_sequence(p.proxy(), start);
  auto state = p.proxy().resume_state();
  REQUIRE(state);
  CHECK(state->relayed_id == connection_id(p.proxy().legs()[ProxySession::origin_leg].pcb));
  CHECK(state->down == down.size());
  CHECK(state->up == up.size());
}

TEST_CASE("a slow reader behind the proxy shuts the sender's window: the proxy holds at most a window") {
  ProxyLab p;
  p.origin.reading = false;
  auto up = pattern(24 << 20, 3);
  p.client.send(up);
  p.settle();
  // Held here: at most one receive window; queued toward the origin: one send buffer; at
  // the origin: one window. The rest is still at the client, unsent.
  CHECK(p.proxy().held(ProxySession::client_leg) <= TCP_WND);
  // Held bytes were taken from the client leg: `up` counts them (they are behind its
  // rcv_nxt) as well as those queued on the origin leg, though the origin has neither.
  const tcp_pcb* origin_leg = p.proxy().legs()[ProxySession::origin_leg].pcb;
  REQUIRE(p.proxy().offsets());
  CHECK(p.proxy().offsets()->up == p.origin.received.size() + p.proxy().held(ProxySession::client_leg) +
                                       static_cast<uint32_t>(origin_leg->snd_lbb - origin_leg->lastack));
  CHECK(p.client.sent_offset < up.size());
  CHECK(p.origin.received.size() <= TCP_WND);
  size_t stalled_at = p.client.sent_offset;
  p.settle();
  CHECK(p.client.sent_offset == stalled_at);  // nothing moves while the reader does not read
  p.origin.reading = true;
  p.origin.pump();
  p.run_until([&] { return p.origin.received.size() >= up.size(); });
  CHECK(p.origin.received == up);
  CHECK(p.lab.rst_seen == 0);
}

TEST_CASE("half-closes cross the proxy both ways and the session then ends cleanly") {
  ProxyLab p;
  SUBCASE("the client closes first; the origin still answers") {
    auto up = pattern(256 << 10, 4);
    p.client.shut_after_sending = true;
    p.client.send(up);
    p.run_until([&] { return p.origin.remote_closed; });
    REQUIRE(p.origin.remote_closed);
    CHECK(p.origin.received == up);
    CHECK_FALSE(p.client.remote_closed);
    // Half-closed: it stays at a move, and says why.
    CHECK_FALSE(p.proxy().movable());
    CHECK(p.proxy().stay_reason().label == "half-closed");
    auto down = pattern(512 << 10, 5);
    p.origin.shut_after_sending = true;
    p.origin.send(down);
    p.run_until([&] { return p.client.remote_closed && p.finished; });
    CHECK(p.client.received == down);
  }
  SUBCASE("the origin closes first; the client still sends") {
    auto down = pattern(256 << 10, 6);
    p.origin.shut_after_sending = true;
    p.origin.send(down);
    p.run_until([&] { return p.client.remote_closed; });
    REQUIRE(p.client.remote_closed);
    CHECK(p.client.received == down);
    CHECK_FALSE(p.origin.remote_closed);
    auto up = pattern(512 << 10, 7);
    p.client.shut_after_sending = true;
    p.client.send(up);
    p.run_until([&] { return p.origin.remote_closed && p.finished; });
    CHECK(p.origin.received == up);
  }
  CHECK(p.client.remote_closed);
  CHECK(p.origin.remote_closed);
  CHECK(p.finished);
  CHECK(p.lab.rst_seen == 0);
  CHECK_FALSE(p.client.failed);
  CHECK_FALSE(p.origin.failed);
}

TEST_CASE("a reset on one leg resets the other") {
  ProxyLab p;
  p.client.send(pattern(64 << 10, 8));
  p.run_until([&] { return p.origin.received.size() == 64u << 10; });
  SUBCASE("the origin resets") {
    p.origin.connection->abort();
    p.run_until([&] { return p.client.failed; });
    CHECK(p.client.failed);
    CHECK(p.client.error == ERR_RST);
  }
  SUBCASE("the client resets") {
    p.client.connection->abort();
    p.run_until([&] { return p.origin.failed; });
    CHECK(p.origin.failed);
    CHECK(p.origin.error == ERR_RST);
  }
  p.run_until([&] { return p.finished; });
  CHECK(p.finished);
}

TEST_CASE("an origin leg that is refused resets the client leg and says why") {
  tcp_pcb* accepted = nullptr;
  LwipLab lab{4, [&accepted](tcp_pcb* pcb) {
                accepted = pcb;
                tcp_arg(pcb, nullptr);
                return true;
              }};
  Peer client;
  auto opened = TcpConnection::connect(lab.a(), roam::testing::lab_port, &client, &lab.c());
  REQUIRE(opened);
  client.connection = std::move(opened.value());
  lab.run([&] { return accepted != nullptr && client.connection->pcb()->state == ESTABLISHED; });
  REQUIRE(accepted != nullptr);
  std::string why;
  bool finished = false;
  ProxySession::Hooks hooks;
  hooks.on_origin_failed = [&](const std::string& reason) { why = reason; };
  auto session = std::make_unique<ProxySession>(*lab.node, accepted, [&](MovableSession*) { finished = true; },
                                                hooks);
  client.send(pattern(1000, 9));
  // Nothing listens on the origin port at C: C answers the SYN with RST.
  auto leg = TcpConnection::connect(lab.c(), origin_port + 1, session.get(), &lab.a());
  REQUIRE(leg);
  session->attach_origin(std::move(leg.value()));
  CHECK_FALSE(session->movable());
  CHECK(session->stay_reason().label == "origin not up");
  lab.run([&] { return client.failed && finished; });
  CHECK(client.failed);
  CHECK(client.error == ERR_RST);
  CHECK_FALSE(client.remote_closed);  // a reset, never a clean end
  CHECK(why.find("origin leg") != std::string::npos);
  CHECK(finished);
}

TEST_CASE("a proxy session moves whole with bytes held in both directions, byte-exact after the move") {
  ProxyLab p;
  roam::testing::FakeClientDirectory directory;
  roam::testing::LoopbackTransfer link;
  migrate::MigrationGuard old_guard{*p.lab.node};
  migrate::ImportConfig config;
  config.address4 = p.lab.b();
  migrate::Importer importer(*p.lab.node, p.table, config);
  struct ShutdownAtEnd {
    migrate::Importer& importer;
    ~ShutdownAtEnd() { importer.shutdown(); }
  } shutdown_at_end{importer};
  std::vector<migrate::OriginLegMoved> told;
  importer.set_tell_origin([&](const migrate::OriginLegMoved& moved) { told.push_back(moved); });
  link.importer = &importer;
  link.node = p.lab.node.get();

  // Both far ends stop reading: each direction fills its path and holds bytes here.
  p.client.reading = false;
  p.origin.reading = false;
  auto up = pattern(20 << 20, 10);
  auto down = pattern(20 << 20, 11);
  p.client.send(up);
  p.origin.send(down);
  p.settle();
  // A late packet of the old flows (sent by A before the freeze) reaches a peer that
  // already follows B and is answered with RST toward A, where the flow is silenced: that
  // one is harmless. Any other RST would break a moved connection.
  auto resets_elsewhere = std::make_shared<size_t>(0);  // the lab outlives this test's locals
  p.lab.lose = [resets_elsewhere, a_address = to_lwip(p.lab.a())](std::span<const uint8_t> packet) {
    std::vector<uint8_t> copy(packet.begin(), packet.end());
    if (LwipLab::is_rst(copy) && std::memcmp(&packet[16], &a_address.u_addr.ip4.addr, 4) != 0) ++*resets_elsewhere;
    return false;
  };
  ProxySession& before = p.proxy();
  size_t held_up = before.held(ProxySession::client_leg);
  size_t held_down = before.held(ProxySession::origin_leg);
  CHECK(held_up > 0);
  CHECK(held_down > 0);
  REQUIRE(before.movable());
  uint64_t origin_id = connection_id(before.legs()[1].pcb);
  SequenceMark start = mark(before);
  CHECK(start.up > 0);
  CHECK(start.down > 0);

  std::optional<migrate::ExportReport> report;
  migrate::ExportPolicy policy;
  policy.handover = false;  // the client follows by rewriting its pcb, as the Follower does
  migrate::Exporter exporter({*p.lab.node, p.table, old_guard, directory, nullptr}, policy, "b", p.table.sessions(),
                             uv_now(p.lab.node->loop()), [&](const migrate::ExportReport& r) { report = r; });
  exporter.start(link);
  link.deliver(exporter);
  REQUIRE(report.has_value());
  CHECK(report->moved == 1);
  REQUIRE(told.size() == 1);
  CHECK(told[0].connection_id == origin_id);
  REQUIRE(p.table.sessions().size() == 1);
  auto* after = dynamic_cast<ProxySession*>(p.table.sessions().front());
  REQUIRE(after != nullptr);
  CHECK(after->held(ProxySession::client_leg) == held_up);
  CHECK(after->held(ProxySession::origin_leg) == held_down);
  // The stream offsets moved with it (client leg app state version 3).
  CHECK(after->offsets() == ProxyStreamOffsets{start.down, start.up});
  auto legs = after->legs();
  CHECK(from_lwip(legs[0].pcb->local_ip) == p.lab.b());
  CHECK(from_lwip(legs[1].pcb->local_ip) == p.lab.b());

  // The peers follow: the client as after the ACM, the origin as when it is told.
  tcp_pcb* client_end = p.client.connection->pcb();
  tcp_pcb* origin_end = p.origin.connection->pcb();
  migrate::rewrite_remote(std::span(&client_end, 1), p.lab.b(), 0);
  migrate::rewrite_remote(std::span(&origin_end, 1), told[0].new_flow.local, told[0].new_flow.local_port);
  p.client.reading = true;
  p.origin.reading = true;
  p.client.pump();
  p.origin.pump();
  p.run_until([&] { return p.origin.received.size() >= up.size() && p.client.received.size() >= down.size(); });
  CHECK(p.origin.received.size() == up.size());
  CHECK(p.client.received.size() == down.size());
  CHECK(p.origin.received == up);
  CHECK(p.client.received == down);
  check_offsets_follow_sequence(*after, start);
  CHECK(after->offsets() == ProxyStreamOffsets{down.size(), up.size()});
  CHECK(importer.parked_count() == 0);
  CHECK(*resets_elsewhere == 0);
  CHECK_FALSE(p.client.failed);
  CHECK_FALSE(p.origin.failed);
}

TEST_CASE("a moved proxy session that ends while its origin leg is still parked leaves that pcb to the importer") {
  ProxyLab p;
  roam::testing::FakeClientDirectory directory;
  roam::testing::LoopbackTransfer link;
  migrate::MigrationGuard old_guard{*p.lab.node};
  migrate::ImportConfig config;
  config.address4 = p.lab.b();
  migrate::Importer importer(*p.lab.node, p.table, config);
  struct ShutdownAtEnd {
    migrate::Importer& importer;
    ~ShutdownAtEnd() { importer.shutdown(); }
  } shutdown_at_end{importer};
  link.importer = &importer;
  link.node = p.lab.node.get();
  p.client.send(pattern(64 << 10, 12));
  p.run_until([&] { return p.origin.received.size() == 64u << 10; });

  std::optional<migrate::ExportReport> report;
  migrate::ExportPolicy policy;
  policy.handover = false;
  migrate::Exporter exporter({*p.lab.node, p.table, old_guard, directory, nullptr}, policy, "b", p.table.sessions(),
                             uv_now(p.lab.node->loop()), [&](const migrate::ExportReport& r) { report = r; });
  exporter.start(link);
  link.deliver(exporter);
  REQUIRE(report.has_value());
  REQUIRE(report->moved == 1);
  MovableSession* moved = p.table.sessions().front();
  FlowKey origin_leg = flow_of(moved->legs()[1].pcb);
  // Only the client follows (nothing tells the origin here); then the client resets.
  tcp_pcb* client_end = p.client.connection->pcb();
  migrate::rewrite_remote(std::span(&client_end, 1), p.lab.b(), 0);
  p.client.send(pattern(1000, 13));
  p.run_until([&] { return importer.guard().parked_count() == 1; });
  REQUIRE(importer.guard().parked_count() == 1);
  p.client.connection->abort();
  auto ended = [&] {
    auto legs = moved->legs();
    return legs[0].pcb == nullptr && legs[1].pcb == nullptr;
  };
  p.run_until(ended);
  CHECK(ended());  // the client leg was reset, the session let go of both legs
  // The parked origin leg is still the guard's, alive: not freed under it.
  REQUIRE(importer.guard().is_parked(origin_leg));
  tcp_pcb* parked = importer.guard().repark(origin_leg, origin_leg);
  REQUIRE(parked != nullptr);
  CHECK(parked->state == ESTABLISHED);
  CHECK(parked->callback_arg == nullptr);
  importer.guard().forget_parked(origin_leg);
  tcp_abort(parked);
}

TEST_CASE("a proxy import refuses legs that do not fit, touching no pcb") {
  LwipLab lab{4, [](tcp_pcb*) { return false; }};
  SessionKinds kinds;
  add_proxy_session_kind(kinds, *lab.node);
  tcp_pcb* a = tcp_new();
  tcp_pcb* b = tcp_new();
  REQUIRE(a != nullptr);
  REQUIRE(b != nullptr);
  auto attempt = [&](std::vector<ImportedLeg> legs) {
    std::string error;
    auto session = kinds.make("proxy", std::move(legs), [](MovableSession*) {}, error);
    CHECK(session == nullptr);
    CHECK_FALSE(error.empty());
    CHECK(a->callback_arg == nullptr);
    CHECK(b->callback_arg == nullptr);
  };
  attempt({ImportedLeg{a, LegRole::client, {}, {proxy_move_state_bare}}});
  attempt({ImportedLeg{a, LegRole::origin, {}, {}}, ImportedLeg{b, LegRole::client, {}, {1}}});
  attempt({ImportedLeg{a, LegRole::client, {}, {}}, ImportedLeg{b, LegRole::origin, {}, {}}});
  attempt({ImportedLeg{a, LegRole::client, {}, {2}}, ImportedLeg{b, LegRole::origin, {}, {}}});
  attempt({ImportedLeg{a, LegRole::client, {}, {1}}, ImportedLeg{b, LegRole::origin, {}, {0}}});
  // Version 3 carries exactly two offsets below 2^62; the checkpoint's version 2 is not a move's.
  auto offsets = encode_proxy_move_state(ProxyStreamOffsets{5, 6});
  REQUIRE(offsets.size() == proxy_move_state_bytes);
  auto longer = offsets;
  longer.push_back(0);
  attempt({ImportedLeg{a, LegRole::client, {}, longer}, ImportedLeg{b, LegRole::origin, {}, {}}});
  attempt({ImportedLeg{a, LegRole::client, {}, {offsets.begin(), offsets.end() - 1}},
           ImportedLeg{b, LegRole::origin, {}, {}}});
  auto huge = encode_proxy_move_state(ProxyStreamOffsets{max_stream_offset, 0});
  attempt({ImportedLeg{a, LegRole::client, {}, huge}, ImportedLeg{b, LegRole::origin, {}, {}}});
  attempt({ImportedLeg{a, LegRole::client, {}, encode_proxy_resume_state({1, 2, 3})},
           ImportedLeg{b, LegRole::origin, {}, {}}});
  tcp_close(a);  // never used: freed at once
  tcp_close(b);
}

}  // namespace
