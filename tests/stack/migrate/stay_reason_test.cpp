// Why a session stays (stack/migrate/stay_reason) and how a move's summary counts the
// sessions that stayed (migrate::stayed_summary): what `roamctl migrate` and `roamctl
// status` say about sessions that cannot move.
#include "stack/migrate/stay_reason.hpp"

#include <doctest/doctest.h>

#include <optional>
#include <string>
#include <vector>

#include "stack/migrate/exporter.hpp"
#include "support/inbound_packet.hpp"

namespace {

using namespace roam;

// A session with one leg (no connection behind it) that says whether it can move.
class FakeSession final : public MovableSession {
 public:
  FakeSession(bool movable, std::optional<StayReason> own) : movable_(movable), own_(std::move(own)) {}
  const char* kind() const override { return "fake"; }
  std::vector<SessionLeg> legs() const override { return {SessionLeg{}}; }
  bool movable() const override { return movable_; }
  StayReason stay_reason() const override { return own_ ? *own_ : MovableSession::stay_reason(); }
  void freeze() override {}
  void thaw() override {}
  std::vector<uint8_t> leg_received(size_t) const override { return {}; }
  std::vector<uint8_t> leg_app_state(size_t) const override { return {}; }
  std::vector<tcp_pcb*> release_legs() override { return {nullptr}; }
  void close() override {}

 private:
  bool movable_;
  std::optional<StayReason> own_;
};

migrate::SessionReport entry(migrate::SessionOutcome outcome, std::string label) {
  migrate::SessionReport r;
  r.outcome = outcome;
  r.label = std::move(label);
  return r;
}

}  // namespace

TEST_CASE("a session that cannot move says why: its own reason, else ending, else its legs") {
  testing::BareNode bare;
  migrate::MigrationGuard guard(*bare.node);

  FakeSession relay(false, StayReason{"relay", "its backend is a kernel socket on this host"});
  auto why = migrate::why_session_stays(relay, relay.legs(), guard);
  REQUIRE(why);
  CHECK(why->label == "relay");
  CHECK(why->text == "its backend is a kernel socket on this host");

  FakeSession ending(false, std::nullopt);
  why = migrate::why_session_stays(ending, ending.legs(), guard);
  REQUIRE(why);
  CHECK(why->label == "ending");
  CHECK(why->text == "its session is ending");

  // Willing, but its leg has no open connection.
  FakeSession willing(true, std::nullopt);
  why = migrate::why_session_stays(willing, willing.legs(), guard);
  REQUIRE(why);
  CHECK(why->label == "not open");
  CHECK(why->text == "no connection");

  why = migrate::why_session_stays(willing, {}, guard);
  REQUIRE(why);
  CHECK(why->label == "legs");
}

TEST_CASE("the move summary counts stayed sessions by label, in the order first met") {
  using migrate::SessionOutcome;
  migrate::ExportReport report;
  CHECK(migrate::stayed_summary(report) == "");

  report.sessions = {entry(SessionOutcome::moved, ""),        entry(SessionOutcome::stayed, "relay"),
                     entry(SessionOutcome::stayed, "ending"), entry(SessionOutcome::no_channel, "no channel"),
                     entry(SessionOutcome::stayed, "relay"),  entry(SessionOutcome::failed, "")};
  CHECK(migrate::stayed_summary(report) == "4 stayed: 2 relay, 1 ending, 1 no channel");

  report.sessions.push_back(entry(SessionOutcome::closed_young, "young"));
  report.closed_young = 1;
  CHECK(migrate::stayed_summary(report) == "4 stayed: 2 relay, 1 ending, 1 no channel; 1 closed young");

  report.sessions = {entry(SessionOutcome::closed_young, "young")};
  CHECK(migrate::stayed_summary(report) == "1 closed young");
}
