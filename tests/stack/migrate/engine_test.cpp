// The move engine driven from code, without processes: an Exporter at A sends a live echo
// session through an in-process TransferLink to an Importer at B, the client's Follower
// applies the resulting ACM, runs the NAT handover against B's responder, and the stream
// goes on byte-exact; and every failure (a refusal, a dead target, a forged or stale ACM)
// leaves the connection where it was. All hosts share the lwIP lab (tests/support).
#include <doctest/doctest.h>

#include "crypto/pool_certificate.hpp"

#include <deque>
#include <memory>
#include <vector>

#include "apps/builtin_sessions.hpp"
#include "apps/echo_app.hpp"
#include "base/clock.hpp"
#include "crypto/sodium.hpp"
#include "stack/connection_id.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/migrate/exporter.hpp"
#include "stack/migrate/follower.hpp"
#include "stack/migrate/importer.hpp"
#include "stack/wire/handover_segment.hpp"
#include "stack/wire/ip_packet.hpp"
#include "stack/wire/tcp_header.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "support/engine_fakes.hpp"
#include "support/engine_lab.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::LwipLab;
using roam::testing::pattern;

using Table = roam::testing::FakeSessionTable;
using Directory = roam::testing::FakeClientDirectory;
using Loopback = roam::testing::LoopbackTransfer;
using roam::testing::EngineLab;
using roam::testing::some_key;


TEST_CASE("a session moved from code follows byte-exact through the exporter, importer and follower") {
  EngineLab e;
  auto data = pattern(1 << 20, 3);
  e.lab.client.send(std::span(data).first(256 << 10));
  e.lab.run([&] { return e.lab.client.received.size() >= (128 << 10); });

  auto report = e.move();
  CHECK(report.ok());
  CHECK(report.moved == 1);
  REQUIRE(report.sessions.size() == 1);
  CHECK(report.sessions[0].outcome == migrate::SessionOutcome::moved);
  CHECK(report.new_address == e.lab.b());
  CHECK(e.importer->counters().sessions_imported == 1);
  CHECK(e.importer->parked_count() == 1);
  REQUIRE(e.directory.announced.size() == 1);
  CHECK(e.directory.announced[0].connection_id == connection_id(e.client_pcb()));
  CHECK(e.directory.announced[0].token.has_value());

  auto verdict = e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), e.acm_for(report, 1), unix_ms());
  CHECK(verdict == control::AcmVerdict::apply);
  e.lab.client.send(std::span(data).subspan(256 << 10));
  e.lab.run([&] { return e.lab.client.received.size() >= data.size() && !e.followed.empty(); });
  CHECK(e.lab.client.received == data);
  CHECK(e.lab.rst_seen == 0);
  CHECK(e.importer->parked_count() == 0);
  CHECK(e.importer->handover().counters().syns_accepted == 1);
  REQUIRE(e.followed.size() == 1);
  CHECK(e.followed[0].connections == 1);
  CHECK(e.followed[0].handovers == 1);
  CHECK(e.followed[0].answered == 1);
  CHECK(e.followed[0].heard == 1);
  CHECK(e.follower->counters().acms_applied == 1);
}

bool is_handover_syn(std::span<const uint8_t> packet) {
  auto info = wire::check_ip_packet(packet);
  if (!info || info->protocol != wire::ip_protocol_tcp) return false;
  auto tcp = wire::parse_tcp_segment(packet, info.value());
  wire::HandoverOption option;
  return tcp && tcp->flags == wire::TcpSegmentView::SYN &&
         wire::find_handover_option(tcp->options, option) == wire::MacOptionLookup::found;
}

TEST_CASE("the follower's own timer repeats a lost handover SYN until it is answered") {
  // Nothing in the test feeds the initiator the time: the Follower's timer, armed for the
  // initiator's deadline, must send the retries.
  EngineLab e;
  size_t lost = 0;
  e.lab.lose = [&lost](std::span<const uint8_t> p) {
    if (lost >= 2 || !is_handover_syn(p)) return false;
    ++lost;
    return true;
  };
  auto report = e.move();
  REQUIRE(report.ok());
  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), e.acm_for(report, 1), unix_ms()) == control::AcmVerdict::apply);
  e.lab.client.send("after the move");
  e.lab.run([&] { return !e.followed.empty(); });
  CHECK(lost == 2);
  const auto& h = e.follower->handover().counters();
  CHECK(h.syn_retries >= 2);
  CHECK(h.synacks_accepted == 1);
  CHECK(h.handovers_failed == 0);
  REQUIRE(e.followed.size() == 1);
  CHECK(e.followed[0].answered == 1);
  CHECK(e.followed[0].heard == 1);
  CHECK(e.lab.rst_seen == 0);
}

TEST_CASE("a session the target refuses goes on at the old server unchanged") {
  EngineLab e;
  e.link.refuse_all = true;
  auto report = e.move();
  CHECK_FALSE(report.ok());
  CHECK(report.moved == 0);
  CHECK(report.failed == 1);
  REQUIRE(report.sessions.size() == 1);
  CHECK(report.sessions[0].outcome == migrate::SessionOutcome::failed);
  CHECK(report.sessions[0].reason == "refused by the test");
  CHECK(e.directory.announced.empty());
  auto data = pattern(64 << 10, 4);
  e.lab.client.send(data);
  e.lab.run([&] { return e.lab.client.received.size() >= data.size(); });
  CHECK(e.lab.client.received == data);
  CHECK(e.lab.rst_seen == 0);
}

TEST_CASE("a move whose target cannot be reached or never answers leaves every session where it was") {
  EngineLab e;
  auto unreachable = e.move(10'000, false);
  CHECK(unreachable.moved == 0);
  CHECK(unreachable.error == "cannot connect to b");

  // Sent, but no answer before the deadline.
  migrate::ExportPolicy policy;
  policy.timeout_ms = 100;
  std::optional<migrate::ExportReport> report;
  struct Blackhole final : migrate::TransferLink {
    size_t sent = 0;
    void send_session(std::vector<uint8_t>) override { ++sent; }
  } blackhole;
  uint64_t now = uv_now(e.lab.node->loop());
  migrate::Exporter exporter({*e.lab.node, e.table, e.old_guard, e.directory, nullptr}, policy, "b",
                             e.table.sessions(), now, [&](const migrate::ExportReport& r) { report = r; });
  exporter.start(blackhole);
  CHECK(blackhole.sent == 1);
  CHECK(exporter.on_time(now + 50) == now + 100);
  CHECK_FALSE(report.has_value());
  exporter.on_time(now + 100);
  REQUIRE(report.has_value());
  CHECK(report->failed == 1);
  auto data = pattern(64 << 10, 5);
  e.lab.client.send(data);
  e.lab.run([&] { return e.lab.client.received.size() >= data.size(); });
  CHECK(e.lab.client.received == data);
}

TEST_CASE("a session that ended while the target was asked is left out of the move") {
  // MigrationService picks the sessions, asks the target for its addresses, then starts:
  // a session that ended in between is freed by then (ASan found the move reading it).
  EngineLab e;
  struct Counting final : migrate::TransferLink {
    size_t sent = 0;
    void send_session(std::vector<uint8_t>) override { ++sent; }
  } link;
  migrate::ExportPolicy policy;
  std::optional<migrate::ExportReport> report;
  std::vector<MovableSession*> picked = e.table.sessions();
  REQUIRE(picked.size() == 1);
  migrate::Exporter exporter({*e.lab.node, e.table, e.old_guard, e.directory, nullptr}, policy, "b", picked,
                             uv_now(e.lab.node->loop()), [&](const migrate::ExportReport& r) { report = r; });
  e.table.drop(picked.front());  // the session ended: freed
  exporter.start(link);
  CHECK(link.sent == 0);
  REQUIRE(report.has_value());
  CHECK(report->moved == 0);
}

TEST_CASE("a session whose client cannot be told stays, and is reported so") {
  EngineLab e;
  e.directory.client = nullptr;
  auto report = e.move();
  CHECK(report.moved == 0);
  REQUIRE(report.sessions.size() == 1);
  CHECK(report.sessions[0].outcome == migrate::SessionOutcome::no_channel);
  CHECK(e.importer->counters().sessions_imported == 0);
}

TEST_CASE("a corrupt transfer is refused by the importer and changes nothing there") {
  EngineLab e;
  std::vector<uint8_t> garbage = pattern(300, 9);
  auto result = e.importer->import_session(garbage, uv_now(e.lab.node->loop()));
  CHECK_FALSE(result);
  CHECK(e.importer->counters().imports_refused == 1);
  CHECK(e.importer->parked_count() == 0);
  CHECK(e.table.sessions().size() == 1);
}

TEST_CASE("stale, replayed and misaddressed ACMs change no connection") {
  EngineLab e;
  auto report = e.move();
  REQUIRE(report.moved == 1);
  FlowKey before = flow_of(e.client_pcb());
  auto stale = e.acm_for(report, 1);
  stale.issued_at_ms -= 3'600'000;
  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), stale, unix_ms()) == control::AcmVerdict::stale);
  auto wrong_sender = e.acm_for(report, 2);
  CHECK(e.follower->apply_acm(e.lab.b(), some_key(), e.pool_of_a(), wrong_sender, unix_ms()) != control::AcmVerdict::apply);
  CHECK(flow_of(e.client_pcb()) == before);
  auto good = e.acm_for(report, 3);
  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), good, unix_ms()) == control::AcmVerdict::apply);
  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), good, unix_ms()) != control::AcmVerdict::apply);  // replayed
  CHECK(e.follower->counters().acms_refused == 3);
  e.lab.run([&] { return !e.followed.empty(); });
}

TEST_CASE("an ACM toward a host outside the sender's pool is refused and the connection stays") {
  EngineLab e;
  auto data = pattern(256 << 10, 6);
  e.lab.client.send(std::span(data).first(64 << 10));
  e.lab.run([&] { return e.lab.client.received.size() >= (64 << 10); });
  auto report = e.move();
  REQUIRE(report.moved == 1);
  FlowKey before = flow_of(e.client_pcb());

  auto uncertified = e.acm_for(report, 1);
  uncertified.target_credential.clear();
  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), uncertified, unix_ms()) ==
        control::AcmVerdict::untrusted_target);

  auto other_pool = crypto::PoolSigningKey::generate();
  auto foreign = e.acm_for(report, 2);
  auto foreign_certificate = crypto::encode_certificate(other_pool.admit(e.target_key.public_key(), 0));
  foreign.target_credential.assign(foreign_certificate.begin(), foreign_certificate.end());
  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), foreign, unix_ms()) ==
        control::AcmVerdict::untrusted_target);

  auto tampered = e.acm_for(report, 3);
  tampered.target_credential[40] ^= 1;  // the member key: the pool's signature breaks
  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), tampered, unix_ms()) ==
        control::AcmVerdict::untrusted_target);

  // A sender that proved no pool cannot move anyone, whatever the ACM shows.
  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), std::nullopt, e.acm_for(report, 4), unix_ms()) ==
        control::AcmVerdict::untrusted_target);

  CHECK(e.follower->counters().acms_untrusted_target == 4);
  CHECK(e.follower->counters().acms_applied == 0);
  CHECK(flow_of(e.client_pcb()) == before);
  // Refusals do not burn sequence numbers: the genuine ACM still applies.
  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), e.acm_for(report, 5), unix_ms()) ==
        control::AcmVerdict::apply);
  // And the stream goes on byte-exact: nothing the refused ACMs named was touched.
  e.lab.client.send(std::span(data).subspan(64 << 10));
  e.lab.run([&] { return e.lab.client.received.size() >= data.size() && !e.followed.empty(); });
  CHECK(e.lab.client.received == data);
  CHECK(e.lab.rst_seen == 0);
}

}  // namespace

namespace {

TEST_CASE("a protected connection is refused by an importer without the segment MAC, and stays") {
  EngineLab e;
  roam::SegmentMacGuard mac(*e.lab.node);
  tcp_pcb* server_pcb = e.table.sessions().front()->legs().front().pcb;
  std::array<uint8_t, 64> handshake_hash{};
  handshake_hash.fill(5);
  mac.protect(server_pcb, roam::connection_id(server_pcb), handshake_hash,
              roam::crypto::SegmentDirection::server_to_client);
  roam::migrate::ExportPolicy policy;
  std::optional<roam::migrate::ExportReport> report;
  roam::migrate::Exporter exporter({*e.lab.node, e.table, e.old_guard, e.directory, &mac}, policy, "b",
                                   e.table.sessions(), uv_now(e.lab.node->loop()),
                                   [&](const roam::migrate::ExportReport& r) { report = r; });
  exporter.start(e.link);
  while (!e.link.answers.empty() && !exporter.finished()) {
    exporter.on_result(e.link.answers.front());
    e.link.answers.pop_front();
  }
  REQUIRE(report.has_value());
  CHECK(report->moved == 0);
  CHECK(report->failed == 1);
  CHECK(report->error.find("segment MAC") != std::string::npos);
  CHECK(e.importer->counters().imports_refused == 1);
  CHECK(e.importer->parked_count() == 0);
  CHECK(e.table.sessions().size() == 1);
  CHECK(mac.state_of(server_pcb).has_value());  // still protected where it is
}

}  // namespace

namespace {

TEST_CASE("a replayed session frame is refused while its session is parked and once it is live, changing nothing") {
  EngineLab e;
  auto report = e.move();
  REQUIRE(report.moved == 1);
  REQUIRE(e.link.payloads.size() == 1);
  const auto replay = e.link.payloads[0];
  auto parked = e.importer->import_session(replay, uv_now(e.lab.node->loop()));
  REQUIRE_FALSE(parked);
  CHECK(parked.error().find("is already parked here") != std::string::npos);
  CHECK(e.importer->counters().refused_duplicate == 1);
  CHECK(e.importer->counters().sessions_imported == 1);
  CHECK(e.importer->parked_count() == 1);
  CHECK(e.importer->guard().parked_count() == 1);
  CHECK(e.table.sessions().size() == 1);

  CHECK(e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), e.acm_for(report, 1), unix_ms()) == control::AcmVerdict::apply);
  auto data = pattern(64 << 10, 21);
  e.lab.client.send(data);
  e.lab.run([&] { return e.lab.client.received.size() >= data.size() && !e.followed.empty(); });
  REQUIRE(e.importer->guard().parked_count() == 0);
  auto live = e.importer->import_session(replay, uv_now(e.lab.node->loop()));
  REQUIRE_FALSE(live);
  CHECK(live.error().find("is already live here") != std::string::npos);
  CHECK(e.importer->counters().refused_duplicate == 2);
  CHECK(e.importer->counters().imports_refused == 2);
  CHECK(e.importer->guard().parked_count() == 0);
  CHECK(e.table.sessions().size() == 1);
  auto more = pattern(64 << 10, 22);
  e.lab.client.send(more);
  e.lab.run([&] { return e.lab.client.received.size() >= data.size() + more.size(); });
  data.insert(data.end(), more.begin(), more.end());
  CHECK(e.lab.client.received == data);
  CHECK(e.lab.rst_seen == 0);
}

TEST_CASE("an import that duplicates a live connection, takes its flow or has no id is refused and counted") {
  EngineLab e;
  tcp_pcb* live_pcb = e.table.sessions().front()->legs().front().pcb;
  auto captured = migrate::capture_snapshot(live_pcb, {}, std::vector<uint8_t>{0});
  REQUIRE(captured);
  auto payload_with = [](const wire::ConnectionSnapshot& snapshot) {
    auto bytes = wire::encode_snapshot(snapshot);
    migrate::SessionPayload payload;
    payload.kind = "echo";
    payload.legs.push_back({LegRole::client, std::nullopt, bytes});
    return migrate::encode_session_payload(payload);
  };
  // An importer on the host where the connection lives (A).
  migrate::ImportConfig config;
  config.address4 = e.lab.a();
  migrate::Importer at_a(*e.lab.node, e.table, config);
  uint64_t now = uv_now(e.lab.node->loop());

  auto duplicate = at_a.import_session(payload_with(*captured), now);
  REQUIRE_FALSE(duplicate);
  CHECK(duplicate.error().find("is already live here") != std::string::npos);
  CHECK(at_a.counters().refused_duplicate == 1);

  auto made_up = *captured;
  made_up.connection_id = 0x5eed5eed5eed5eedull;  // a made-up id on the live connection's flow
  auto collision = at_a.import_session(payload_with(made_up), now);
  REQUIRE_FALSE(collision);
  CHECK(collision.error().find("is taken here") != std::string::npos);
  CHECK(at_a.counters().refused_flow_collision == 1);

  auto no_id = *captured;
  no_id.connection_id = 0;
  CHECK_FALSE(at_a.import_session(payload_with(no_id), now));
  CHECK(at_a.counters().refused_no_id == 1);
  // The same at B, where nothing else would stop it.
  auto at_b = e.importer->import_session(payload_with(no_id), now);
  REQUIRE_FALSE(at_b);
  CHECK(at_b.error() == "connection id 0 (none)");
  CHECK(e.importer->counters().refused_no_id == 1);

  CHECK(at_a.counters().imports_refused == 3);
  CHECK(at_a.counters().sessions_imported == 0);
  CHECK(at_a.parked_count() == 0);
  CHECK(at_a.guard().parked_count() == 0);
  CHECK(e.importer->parked_count() == 0);
  CHECK(e.table.sessions().size() == 1);
  CHECK(find_active_pcb(flow_of(live_pcb)) == live_pcb);
  auto data = pattern(64 << 10, 23);
  e.lab.client.send(data);
  e.lab.run([&] { return e.lab.client.received.size() >= data.size(); });
  CHECK(e.lab.client.received == data);
  CHECK(e.lab.rst_seen == 0);
}

}  // namespace

TEST_CASE("would_freeze_any says whether a move would freeze a session, and freezes nothing itself") {
  // MigrationService freezes right behind the address_request only when something will
  // freeze; a move that freezes nothing waits for the target's addresses (its summary).
  EngineLab e;
  migrate::ExportPolicy policy;
  std::vector<MovableSession*> picked = e.table.sessions();
  REQUIRE(picked.size() == 1);
  auto make = [&] {
    return std::make_unique<migrate::Exporter>(
        migrate::ExportServices{*e.lab.node, e.table, e.old_guard, e.directory, nullptr}, policy, "b", picked,
        uv_now(e.lab.node->loop()), [](const migrate::ExportReport&) {});
  };
  auto exporter = make();
  CHECK(exporter->would_freeze_any());
  CHECK_FALSE(exporter->started());
  // Nothing froze: the echo still answers from A.
  auto data = pattern(8 << 10, 11);
  e.lab.client.send(data);
  e.lab.run([&] { return e.lab.client.received.size() >= data.size(); });
  CHECK(e.lab.client.received == data);

  e.directory.client = nullptr;  // its client could not be told: it would stay
  CHECK_FALSE(make()->would_freeze_any());

  policy.too_young = [](uint64_t) { return true; };  // closed instead of moved
  e.directory.client = &e.directory;
  CHECK_FALSE(make()->would_freeze_any());
}
