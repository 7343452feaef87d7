// The echo and discard apps as movable sessions, against the real lwIP
// (tests/support/lwip_lab.hpp): a session moved mid-stream, with bytes it held while
// frozen and with the client's FIN already in, keeps the stream exact.
#include "apps/echo_app.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "apps/builtin_sessions.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "support/lwip_lab.hpp"
#include "support/session_mover.hpp"

namespace {

using namespace roam;
using roam::testing::LwipLab;
using roam::testing::pattern;

struct EchoLab {
  explicit EchoLab(EchoSession::Mode m) : mode(m) {}

  EchoSession::Mode mode;
  LwipLab lab{4, [this](tcp_pcb* pcb) {
                session = std::make_unique<EchoSession>(*lab.node, mode, pcb, on_finished());
                return true;
              }};
  migrate::MigrationGuard guard{*lab.node};
  std::unique_ptr<MovableSession> session;
  int finished = 0;

  MovableSession::FinishedFn on_finished() {
    return [this](MovableSession*) { ++finished; };
  }
  void connect() {
    lab.connect([this] { return session != nullptr; });
  }
  testing::MovedSession move() {
    auto moved = testing::move_session(lab, guard, session, SessionContext{lab.node.get(), ""}, on_finished());
    session = std::move(moved.session);
    return moved;
  }
};

TEST_CASE("an echo session moved mid-stream, holding bytes it received while frozen, echoes every byte once") {
  EchoLab e(EchoSession::Mode::echo);
  e.connect();
  CHECK(std::string(e.session->kind()) == "echo");
  e.lab.client.send(pattern(8 << 20, 21));
  e.lab.run([&] { return e.lab.client.received.size() > (1 << 20); });
  // Frozen, the session keeps what arrives without echoing or consuming it (up to its
  // receive window: 64 KiB at first, more as it grew while the echo flowed).
  e.session->freeze();
  size_t echoed_before = e.lab.client.received.size();
  e.lab.run([&] { return e.session->leg_received(0).size() > (48 << 10); });
  REQUIRE(e.session->leg_received(0).size() > (48 << 10));
  auto moved = e.move();
  CHECK(moved.snapshot.received.size() > (48 << 10));
  CHECK(moved.snapshot.app_state == std::vector<uint8_t>{0});
  CHECK(e.lab.client.received.size() >= echoed_before);
  e.lab.run([&] { return e.lab.client.received.size() == e.lab.client.to_send.size(); });
  INFO("client received ", e.lab.client.received.size(), " of ", e.lab.client.to_send.size());
  CHECK(e.lab.client.received == e.lab.client.to_send);
  CHECK(e.lab.rst_seen == 0);
  CHECK(e.guard.counters().unparked == 1);
}

TEST_CASE("an echo session moved after the client's FIN echoes the rest, then closes") {
  EchoLab e(EchoSession::Mode::echo);
  e.connect();
  e.session->freeze();
  // Less than the 64 KiB a fresh connection's window holds: the FIN needs room too.
  e.lab.client.send(pattern(48 << 10, 22));
  e.lab.run([&] { return e.lab.client.sent_offset == e.lab.client.to_send.size(); });
  e.lab.client.connection->shutdown_write();
  // Data and FIN reach the frozen session: held, and the pcb is in CLOSE_WAIT.
  e.lab.run([&] { return e.session->leg_app_state(0) == std::vector<uint8_t>{1}; });
  REQUIRE(e.session->leg_app_state(0) == std::vector<uint8_t>{1});
  auto moved = e.move();
  CHECK(moved.snapshot.state == wire::SnapshotTcpState::close_wait);
  CHECK(moved.snapshot.received.size() == (48 << 10));
  e.lab.run([&] { return e.lab.client.remote_closed || e.lab.client.failed; });
  CHECK(e.lab.client.received == e.lab.client.to_send);
  CHECK(e.lab.client.remote_closed);
  CHECK(e.lab.rst_seen == 0);
  e.lab.run([&] { return e.finished == 1; });
  CHECK(e.finished == 1);
}

TEST_CASE("a discard session moved mid-stream takes every byte the client sends") {
  EchoLab e(EchoSession::Mode::discard);
  e.connect();
  CHECK(std::string(e.session->kind()) == "discard");
  e.lab.client.send(pattern(8 << 20, 23));
  e.lab.run([&] { return e.lab.client.sent_offset > (2 << 20); });
  e.session->freeze();
  e.lab.run([&] { return !e.session->leg_received(0).empty(); });
  e.move();
  e.lab.run([&] {
    return e.lab.client.sent_offset == e.lab.client.to_send.size() &&
           e.lab.client.connection->everything_acknowledged();
  });
  CHECK(e.lab.client.sent_offset == e.lab.client.to_send.size());
  CHECK(e.lab.client.connection->everything_acknowledged());
  CHECK(e.lab.client.received.empty());
  CHECK(e.lab.rst_seen == 0);
}

TEST_CASE("a thawed echo session echoes what it held and carries on") {
  EchoLab e(EchoSession::Mode::echo);
  e.connect();
  e.session->freeze();
  e.lab.client.send(pattern(32 << 10, 24));
  e.lab.run([&] { return e.session->leg_received(0).size() == (32 << 10); });
  CHECK(e.lab.client.received.empty());
  e.session->thaw();
  e.lab.client.send(pattern(32 << 10, 25));
  e.lab.run([&] { return e.lab.client.received.size() == e.lab.client.to_send.size(); });
  CHECK(e.lab.client.received == e.lab.client.to_send);
}

TEST_CASE("an echo session with malformed app state is refused, leaving the pcb alone") {
  EchoLab e(EchoSession::Mode::echo);
  tcp_pcb* pcb = tcp_new();
  REQUIRE(pcb != nullptr);
  SessionContext context{e.lab.node.get(), ""};
  for (const auto& state : std::vector<std::vector<uint8_t>>{{}, {2}, {0, 0}}) {
    std::string error;
    CHECK(make_movable_session("echo", context, pcb, {}, state, {}, error) == nullptr);
    CHECK_FALSE(error.empty());
  }
  CHECK(pcb->callback_arg == nullptr);
  tcp_close(pcb);
}

}  // namespace
