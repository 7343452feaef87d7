// Pre-copy through the move engine in one LwipLab (support/engine_lab.hpp): a busy echo
// session's queues reach B ahead of the freeze, the freeze carries only the delta, B
// splices it and the stream goes on byte-exact after the client follows. A delta whose
// pre-copied bytes B no longer holds is refused and the connection goes on at A,
// unchanged; a target that refuses pre-copied bytes gets whole snapshots.
#include <doctest/doctest.h>

#include "stack/connection_id.hpp"
#include "support/engine_lab.hpp"

namespace {

using namespace roam;
using roam::testing::EngineLab;
using roam::testing::pattern;
using roam::testing::some_key;

// A busy echo: the client streams `data` and reads the echo; returns once part came back.
void make_busy(EngineLab& e, const std::vector<uint8_t>& data) {
  e.lab.client.send(data);
  e.lab.run([&] { return e.lab.client.received.size() >= (512 << 10); });
}

// Counts hold_output/release_output around the lab's echo session, forwarding the rest.
struct HoldCounts {
  int holds = 0;
  int releases = 0;
};
class HoldRecorder final : public MovableSession {
 public:
  HoldRecorder(std::unique_ptr<MovableSession> inner, HoldCounts& counts) : inner_(std::move(inner)), counts_(counts) {}
  const char* kind() const override { return inner_->kind(); }
  std::vector<SessionLeg> legs() const override { return inner_->legs(); }
  bool movable() const override { return inner_->movable(); }
  void freeze() override { inner_->freeze(); }
  void thaw() override { inner_->thaw(); }
  void hold_output() override { ++counts_.holds; }
  void release_output() override { ++counts_.releases; }
  std::vector<uint8_t> leg_received(size_t leg) const override { return inner_->leg_received(leg); }
  std::vector<uint8_t> leg_app_state(size_t leg) const override { return inner_->leg_app_state(leg); }
  std::vector<tcp_pcb*> release_legs() override { return inner_->release_legs(); }
  void close() override { inner_->close(); }

 private:
  std::unique_ptr<MovableSession> inner_;
  HoldCounts& counts_;
};

void record_holds(EngineLab& e, HoldCounts& counts) {
  REQUIRE(e.table.owned.size() == 1);
  e.table.owned[0] = std::make_unique<HoldRecorder>(std::move(e.table.owned[0]), counts);
}

void follow_and_finish(EngineLab& e, const migrate::ExportReport& report, const std::vector<uint8_t>& data) {
  auto verdict = e.follower->apply_acm(e.lab.a(), some_key(), e.pool_of_a(), e.acm_for(report, 1), unix_ms());
  CHECK(verdict == control::AcmVerdict::apply);
  e.lab.run([&] { return e.lab.client.received.size() >= data.size() && !e.followed.empty(); });
}

// The whole stream arrived byte-exact and the data connection never failed. Not
// lab.rst_seen: the Follower's control channel to B (nothing serves it in this lab) is
// refused with an RST once the longer stream gives it time; the data connection never
// saw one.
void check_stream_exact(EngineLab& e, const std::vector<uint8_t>& data) {
  CHECK(e.lab.client.received == data);
  CHECK_FALSE(e.lab.client.failed);
}

}  // namespace

TEST_CASE("a pre-copied busy session moves with only the delta frozen and follows byte-exact") {
  EngineLab e;
  auto data = pattern(4 << 20, 11);
  make_busy(e, data);
  e.policy.precopy = true;
  // Nothing runs between the last round and the freeze: the delta is empty.
  auto report = e.move();
  CHECK(report.ok());
  CHECK(report.moved == 1);
  CHECK(report.precopy_rounds == 1);
  CHECK(report.precopy_bytes > 0);
  CHECK(report.precopy_bytes_relied == report.precopy_bytes);
  CHECK(report.snapshot_stream_bytes == 0);
  CHECK(e.importer->counters().precopy_bytes_used == report.precopy_bytes);
  CHECK(e.link.store.held_bytes() == 0);
  follow_and_finish(e, report, data);
  check_stream_exact(e, data);
}

TEST_CASE("pre-copy rounds while the connection runs: acknowledged bytes are skipped and the rest splices") {
  EngineLab e;
  auto data = pattern(4 << 20, 12);
  make_busy(e, data);
  e.policy.precopy = true;
  e.policy.precopy_max_rounds = 3;
  e.policy.precopy_min_round_bytes = 1;
  // The connection goes on for a few loop turns after each round: its peer acknowledges
  // part of what was pre-copied, the app reads and queues more.
  e.between_rounds = [&e] {
    int turns = 0;
    e.lab.run([&] { return ++turns > 3; });
  };
  auto report = e.move();
  CHECK(report.ok());
  CHECK(report.moved == 1);
  CHECK(report.precopy_rounds >= 2);
  CHECK(report.precopy_bytes > report.precopy_bytes_relied);
  CHECK(e.link.store.held_bytes() == 0);
  follow_and_finish(e, report, data);
  check_stream_exact(e, data);
}

TEST_CASE("a delta whose pre-copied bytes the target lost is refused, and the connection goes on at the old server") {
  EngineLab e;
  auto data = pattern(4 << 20, 13);
  make_busy(e, data);
  e.policy.precopy = true;
  uint64_t id = connection_id(e.client_pcb());
  // B confirmed the bytes, then lost them (a forged or broken peer would look the same).
  e.between_rounds = [&e, id] { e.link.store.discard(id); };
  auto report = e.move();
  CHECK_FALSE(report.ok());
  CHECK(report.moved == 0);
  CHECK(report.failed == 1);
  REQUIRE(report.sessions.size() == 1);
  CHECK(report.sessions[0].reason.find("no pre-copied") != std::string::npos);
  CHECK(e.importer->counters().refused_precopy_mismatch == 1);
  CHECK(e.importer->counters().sessions_imported == 0);
  CHECK(e.importer->parked_count() == 0);
  CHECK(e.directory.announced.empty());
  e.lab.run([&] { return e.lab.client.received.size() >= data.size(); });
  CHECK(e.lab.client.received == data);
  CHECK(e.lab.rst_seen == 0);
}

TEST_CASE("a target that refuses pre-copied bytes gets whole snapshots and the move still succeeds") {
  EngineLab e;
  auto data = pattern(4 << 20, 14);
  make_busy(e, data);
  e.policy.precopy = true;
  e.link.refuse_precopy = true;
  auto report = e.move();
  CHECK(report.ok());
  CHECK(report.moved == 1);
  CHECK(report.precopy_refused);
  CHECK(report.precopy_bytes_relied == 0);
  CHECK(report.snapshot_stream_bytes > 0);
  CHECK(e.importer->counters().precopy_bytes_used == 0);
  follow_and_finish(e, report, data);
  check_stream_exact(e, data);
}

TEST_CASE("a target that did not announce pre-copy gets whole snapshots without a round") {
  EngineLab e;
  auto data = pattern(4 << 20, 15);
  make_busy(e, data);
  e.policy.precopy = true;
  e.target_accepts_precopy = false;
  auto report = e.move();
  CHECK(report.ok());
  CHECK(report.moved == 1);
  CHECK(report.precopy_skipped == migrate::PrecopySkip::target);
  CHECK(report.precopy_rounds == 0);
  CHECK(e.link.store.held_bytes() == 0);
  CHECK(report.snapshot_stream_bytes > 0);
  follow_and_finish(e, report, data);
  check_stream_exact(e, data);
}

TEST_CASE("auto pre-copies a busy session and skips one that queues less than the threshold") {
  EngineLab e;
  auto data = pattern(4 << 20, 16);
  make_busy(e, data);
  e.policy.precopy = true;
  SUBCASE("busy: over the threshold") {
    // Well under what the busy session holds: at the move it may have exactly one full
    // 64 KiB buffer queued (1 run in ~10 with a 64 KiB threshold: skipped as idle).
    e.policy.precopy_idle_bytes = 16 << 10;
    auto report = e.move();
    CHECK(report.ok());
    CHECK(report.precopy_skipped == migrate::PrecopySkip::none);
    CHECK(report.precopy_queued_bytes > (16u << 10));
    CHECK(report.precopy_rounds >= 1);
    CHECK(report.precopy_bytes_relied > 0);
    follow_and_finish(e, report, data);
  }
  SUBCASE("idle enough: under the threshold") {
    e.policy.precopy_idle_bytes = 64u << 20;  // more than the whole stream
    auto report = e.move();
    CHECK(report.ok());
    CHECK(report.precopy_skipped == migrate::PrecopySkip::idle);
    CHECK(report.precopy_rounds == 0);
    CHECK(report.precopy_bytes == 0);
    follow_and_finish(e, report, data);
  }
  check_stream_exact(e, data);
}

TEST_CASE("the held round: moving sessions hold their output for it, and only those that stay are released") {
  EngineLab e;
  auto data = pattern(4 << 20, 17);
  make_busy(e, data);
  HoldCounts counts;
  record_holds(e, counts);
  e.policy.precopy = true;
  SUBCASE("a moved session is held once and never released here (its new host sends on)") {
    auto report = e.move();
    CHECK(report.ok());
    CHECK(report.moved == 1);
    CHECK(report.candidates == 1);  // releasing at the end does not forget the moved one
    CHECK(counts.holds == 1);
    CHECK(counts.releases == 0);
    follow_and_finish(e, report, data);
  }
  SUBCASE("a session the target refuses after the held round is released and goes on here") {
    uint64_t id = connection_id(e.client_pcb());
    e.between_rounds = [&e, id] { e.link.store.discard(id); };
    auto report = e.move();
    CHECK(report.moved == 0);
    CHECK(report.failed == 1);
    CHECK(counts.holds == 1);
    CHECK(counts.releases == 1);
    e.lab.run([&] { return e.lab.client.received.size() >= data.size(); });
  }
  SUBCASE("a move abandoned after the held round releases it") {
    // The link breaks after the rounds: the exporter never starts.
    migrate::Exporter exporter({*e.lab.node, e.table, e.old_guard, e.directory, nullptr}, e.policy, "b",
                               e.table.sessions(), uv_now(e.lab.node->loop()), [](const migrate::ExportReport&) {});
    exporter.decide_precopy(true);
    while (exporter.precopy_wants_round() && exporter.precopy_round(e.link) > 0) {
      REQUIRE_FALSE(e.link.syncs.empty());
      exporter.precopy_confirmed(e.link.syncs.front());
      e.link.syncs.pop_front();
    }
    CHECK(counts.holds == 0);  // the plain rounds hold nothing
    REQUIRE(exporter.precopy_wants_held_round());
    exporter.precopy_held_round(e.link);
    CHECK(counts.holds == 1);
    CHECK_FALSE(exporter.precopy_wants_held_round());  // once per move
    exporter.abandon("transfer connection closed");
    CHECK(counts.releases == 1);
    e.lab.run([&] { return e.lab.client.received.size() >= data.size(); });
  }
  SUBCASE("--precopy-hold off: no held round") {
    e.policy.precopy_hold_output = false;
    auto report = e.move();
    CHECK(report.ok());
    CHECK(counts.holds == 0);
    CHECK(counts.releases == 0);
    CHECK_FALSE(report.precopy_held_round);
    follow_and_finish(e, report, data);
  }
  check_stream_exact(e, data);
}
