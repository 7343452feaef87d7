// Exporter: one move of sessions from this server to another (DESIGN.md section 4, "A
// server moves"; seed 000's Connector), started from code. Whoever starts a move (the
// operator's control port, the Migration Sensor, the roaming schedule, a test) builds an
// Exporter with the sessions and a completion callback, connects a TransferLink to the
// target, and feeds it the target's answers and the time. It owns no socket and no timer.
// Loop thread only.
//
//   start(link)        for each candidate: skip what cannot move (why_session_stays: the
//                      session ending or of a kind that never moves, a leg not ESTABLISHED
//                      or parked here; too young: closed; a client leg with no client to
//                      tell; each logged with its reason, the first 20 per move), else
//                      freeze the app and every leg's pcb, silence their flows and capture
//                      one snapshot per leg, all or nothing (a leg that cannot be captured
//                      puts every leg back as it was), and send them in one session frame
//   on_result(r)       the target's answer for the next session sent, in order: ok -> free
//                      every leg's pcb without RST or FIN, drop the session; refused ->
//                      unsilence, thaw: the session goes on here exactly as it was
//   abandon(reason)    the link broke or the target misbehaved: every session not settled
//                      resumes here
//   on_time(now)       past the deadline the move is abandoned; returns the next deadline
// When every session settled: the clients of the moved client legs are told
// (ClientDirectory::announce, one ACM per client and old endpoint), then `done(report)`
// runs once with each session's outcome. Origin legs are not announced here: the new host
// tells their origin (Importer, the tell-origin hook).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/ip_address.hpp"
#include "crypto/handover_mac.hpp"
#include "stack/flow_key.hpp"
#include "stack/migrate/control_frame.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/precopy.hpp"
#include "stack/migrate/session_table.hpp"
#include "stack/migrate/stay_reason.hpp"
#include "stack/node.hpp"

namespace roam {
class SegmentMacGuard;
}

namespace roam::migrate {

enum class SessionOutcome : uint8_t {
  moved,         // lives on the target now
  failed,        // the target refused it or the move was abandoned: it goes on here
  stayed,        // could not move now (ending, not established, parked here): untouched
  no_channel,    // its client has no control channel here to be told by: untouched
  closed_young,  // long-lived policy: younger than the limit, closed instead of moved
};
const char* session_outcome_name(SessionOutcome outcome);

// Why a move ran no pre-copy round (ExportReport::precopy_skipped).
enum class PrecopySkip : uint8_t {
  none,    // it pre-copies (or nothing was decided yet)
  off,     // this server's policy: pre-copy off
  target,  // the target did not announce pre-copy (PROTOCOL.md 4.3: older, or --precopy off)
  idle,    // auto: the sessions queue at most precopy_idle_bytes
};
const char* precopy_skip_name(PrecopySkip skip);

struct LegReport {
  uint64_t connection_id = 0;
  FlowKey flow;  // as it was here
  LegRole role = LegRole::client;
};

struct SessionReport {
  uint64_t connection_id = 0;  // the first leg's
  FlowKey flow;                // the first leg's, as it was here
  std::vector<LegReport> legs;
  std::string kind;
  SessionOutcome outcome = SessionOutcome::stayed;
  std::string reason;  // why it failed or stayed; "" when moved
  std::string label;   // stayed, no channel, closed young: a short word for summaries
};

struct ExportReport {
  std::string target;
  IpAddress new_address;  // as the target reported it (when moved > 0)
  size_t candidates = 0;  // sessions offered
  size_t moved = 0;
  size_t failed = 0;
  size_t stayed = 0;  // stayed + no_channel
  size_t closed_young = 0;
  std::string error;  // the first failure: of the whole move, or of a session
  double elapsed_ms = 0;
  // How long the move kept connections frozen here (the longest session of the move):
  // from its freeze to its frame handed to the link (capture and encoding), and to its
  // release (moved: pcbs freed) or its thaw (failed). 0 when nothing froze.
  double capture_ms_max = 0;
  double frozen_ms_max = 0;
  uint64_t first_frozen_ns = 0;  // uv_hrtime of the move's first freeze (0: none froze)
  // The first frozen session's way through the frozen interval (uv_hrtime, 0: not
  // reached): its legs captured, its session frame encoded, that frame sealed and handed
  // to the socket (send_session returned), the target's answer read (the read that
  // completed its session_result), and its pcbs released or thawed.
  struct Stages {
    uint64_t captured_ns = 0;
    uint64_t encoded_ns = 0;
    uint64_t sent_ns = 0;
    uint64_t answer_read_ns = 0;
    uint64_t released_ns = 0;
  } first_stages;
  // Stream bytes the snapshots carried (unacknowledged, unsent, received but unread); with
  // pre-copy only the delta.
  uint64_t snapshot_stream_bytes = 0;
  // Pre-copy: rounds run, stream bytes sent in them, and of those the bytes the snapshots
  // relied on (left out at the freeze). Whether the target confirmed what it held.
  size_t precopy_rounds = 0;  // the held round included
  bool precopy_held_round = false;  // the last round ran with the sessions' output held
  uint64_t precopy_bytes = 0;
  uint64_t precopy_bytes_relied = 0;
  bool precopy_refused = false;
  // Why it did not pre-copy, and the queued stream bytes the decision saw.
  PrecopySkip precopy_skipped = PrecopySkip::none;
  uint64_t precopy_queued_bytes = 0;
  std::vector<SessionReport> sessions;
  bool ok() const { return failed == 0 && error.empty(); }
};

// The sessions of a move that neither moved nor failed, counted by their label:
// "2 stayed: 1 relay, 1 ending; 1 closed young" (labels in the order first met), or ""
// when there are none. The move's summary appends it in parentheses.
std::string stayed_summary(const ExportReport& report);

// A connection that moved, for telling its client.
struct MovedConnection {
  uint64_t connection_id = 0;
  FlowKey old_flow;
  const void* client = nullptr;  // the ClientDirectory's handle
  std::optional<crypto::HandoverToken> token;
};

// Who can tell clients where their connections went: the channel server, or a test.
class ClientDirectory {
 public:
  virtual ~ClientDirectory() = default;
  // A handle of the client that can be told about this connection, nullptr if none.
  virtual const void* client_of(uint64_t connection_id) = 0;
  // Tells every client where its moved connections went. Once per move, when it settled.
  virtual void announce(std::span<const MovedConnection> moved, const IpAddress& new_address) = 0;
};

// Where session frames go: the target's transfer port, or an Importer in the same
// process (tests). Answers come back through Exporter::on_result, in order.
class TransferLink {
 public:
  virtual ~TransferLink() = default;
  virtual void send_session(std::vector<uint8_t> frame) = 0;
  // Any other whole frame (precopy, precopy_sync), in order with the sessions.
  virtual void send_frame(std::vector<uint8_t> frame) { send_session(std::move(frame)); }
};

struct ExportPolicy {
  uint64_t timeout_ms = 10'000;  // a move not fully answered by then is abandoned
  bool handover = true;          // a NAT handover token per client and move
  // Long-lived policy (seed 003 section 3.3): true when a connection is too young to be
  // worth a move; it is closed instead. Empty: every connection moves.
  std::function<bool(uint64_t connection_id)> too_young;
  // Pre-copy (precopy.hpp, PROTOCOL.md 4.3): before the freeze, each movable session's
  // queued stream bytes go to the target in rounds, each ended by a precopy_sync; another
  // round runs while the last one sent at least precopy_min_round_bytes, up to
  // precopy_max_rounds; then the freeze sends deltas.
  // Only toward a target that announced it (decide_precopy).
  bool precopy = false;
  size_t precopy_max_rounds = 2;
  uint64_t precopy_min_round_bytes = 64u << 10;
  // --precopy auto: a move whose movable sessions queue at most this many stream bytes
  // (send queues from snd_una, received bytes not read yet) is idle: no pre-copy. 0: none
  // is (on).
  uint64_t precopy_idle_bytes = 0;
  // After the last round, one more while the sessions hold their output (hold_output):
  // what the app would have queued meanwhile stays unqueued, so the freeze carries
  // almost no stream bytes (PROTOCOL.md 4.3, "The held round").
  bool precopy_hold_output = true;
};

struct ExportServices {
  Node& node;
  SessionTable& table;
  MigrationGuard& guard;
  ClientDirectory& clients;
  SegmentMacGuard* segment_mac = nullptr;
};

class Exporter {
 public:
  using DoneFn = std::function<void(const ExportReport&)>;

  // `now_ms`: loop time; the deadline counts from here.
  Exporter(ExportServices services, ExportPolicy policy, std::string target, std::vector<MovableSession*> sessions,
           uint64_t now_ms, DoneFn done);
  Exporter(const Exporter&) = delete;
  Exporter& operator=(const Exporter&) = delete;

  // Moves the candidates still in the session table, as the same connections they were
  // when picked: one that ended while the target was being asked (address_request) is
  // freed by then, and another session may since live at its address.
  void start(TransferLink& link);
  // Whether start() would freeze at least one candidate now (one still here, movable, not
  // too young, every client leg's client told). The service then freezes right behind the
  // address_request instead of a round trip later (PROTOCOL.md 4.3); a move that freezes
  // nothing waits for the target's addresses, which its summary names.
  bool would_freeze_any();
  // Before the target's answer: true when this move will not pre-copy whatever the
  // target announces (policy off; auto and idle now), so the freeze need not wait for the
  // answer. False: the answer decides (decide_precopy).
  bool precopy_ruled_out();
  // Pre-copy, before the first round: whether this move pre-copies, from the policy,
  // whether the target announced it (its address answer, PROTOCOL.md 4.3) and, for auto,
  // the queued bytes now. Until it is called no round runs.
  PrecopySkip decide_precopy(bool target_accepts);
  // Pre-copy, before start(): one round (precopy frames, then a precopy_sync, when any byte
  // went); returns the stream bytes sent (0: nothing to send, start now).
  uint64_t precopy_round(TransferLink& link);
  // The target's answer to the round's sync: the bytes it holds (nullopt: it refused some).
  // When that is not what was sent, no snapshot relies on pre-copied bytes.
  void precopy_confirmed(std::optional<uint64_t> held_bytes);
  // Whether another round is worth it (the last one moved enough, rounds are left).
  bool precopy_wants_round() const;
  // When no plain round is wanted any more: whether the held round runs (the policy asks
  // for it, this move pre-copied, the target's syncs agreed, it did not run yet).
  bool precopy_wants_held_round() const;
  // The held round: every session start() would move holds its output, then a round as
  // precopy_round. Sessions are released when the move finishes, whatever its outcome
  // (a moved session is gone by then: its new host sends on).
  uint64_t precopy_held_round(TransferLink& link);
  // `read_ns`: when the read that completed the answer came (uv_hrtime; 0: now).
  void on_result(const SessionResult& result, uint64_t read_ns = 0);
  // Also for an answer that could not be decoded (counted by the caller).
  void abandon(const std::string& reason);
  uint64_t on_time(uint64_t now_ms);
  uint64_t deadline() const { return finished_ ? UINT64_MAX : deadline_ms_; }
  bool started() const { return started_; }
  bool finished() const { return finished_; }
  // Abandoned (link broke, timeout, a bad answer): answers may still be on their way, so
  // the link is not fit for another move.
  bool abandoned() const { return abandoned_; }
  const std::string& target() const { return report_.target; }

 private:
  struct InFlight {
    MovableSession* session = nullptr;  // nullptr once it moved
    std::vector<tcp_pcb*> pcbs;         // its legs' frozen pcbs, in leg order
    std::vector<const void*> clients;   // per leg: the client to tell (client legs)
    size_t report_index = 0;
    bool settled = false;
    uint64_t frozen_ns = 0;  // uv_hrtime() at its freeze
    bool first = false;      // the move's first frozen session: its stages are reported
  };
  void note_thawed(const InFlight& item);
  // The candidates still in the session table, as the same connections they were.
  void drop_gone_candidates();
  struct Candidate;
  // True for a candidate that left the session table or is another connection now.
  std::function<bool(const Candidate&)> gone_test();
  SessionReport& record(MovableSession* session, const std::vector<SessionLeg>& legs, SessionOutcome outcome,
                        std::string reason, std::string label = {});
  void log_stayed(const std::string& name, const SessionReport& entry);
  void resume(InFlight& item, const std::string& reason);
  void finish();
  // Releases the output of every held session still here (finish()).
  void release_held_output();

  ExportServices services_;
  ExportPolicy policy_;
  struct Candidate {
    MovableSession* session;
    uint64_t connection_id;  // of its first leg when picked (0: none)
  };
  std::vector<Candidate> candidates_;
  DoneFn done_;
  uint64_t deadline_ms_;
  uint64_t started_ns_;
  std::vector<InFlight> in_flight_;
  size_t answered_ = 0;
  std::map<const void*, crypto::HandoverToken> tokens_;  // one per client and move
  ExportReport report_;
  size_t stayed_logged_ = 0;
  bool started_ = false;
  bool finished_ = false;
  bool abandoned_ = false;
  PrecopyLedger precopied_;     // what the target holds, per connection and stream
  uint64_t last_round_bytes_ = 0;
  bool precopy_relied_on_ = true;  // false once the target's sync disagreed
  bool precopy_chosen_ = false;     // decide_precopy said yes
  bool output_held_ = false;        // the held round ran: candidates hold their output
  // Stream bytes queued in the movable sessions' legs now (decide_precopy, auto).
  uint64_t queued_stream_bytes();
  // What start() does with a session, decided without any effect (would_freeze_any asks
  // the same): it stays (why), is closed as too young, stays for want of a client to tell,
  // or moves (clients: each client leg's client).
  struct Admission {
    std::optional<StayReason> stays;
    bool young = false;
    bool told = false;
    std::vector<const void*> clients;
    bool moves() const { return !stays && !young && told; }
  };
  Admission admit(const MovableSession& session, const std::vector<SessionLeg>& legs) const;
  // Sessions that stay are logged one by one up to this many per move.
  static constexpr size_t max_stayed_logged = 20;
};

}  // namespace roam::migrate
