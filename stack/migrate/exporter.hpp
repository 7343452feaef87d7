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
#include "stack/migrate/session_table.hpp"
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
  // Stream bytes the snapshots carried (unacknowledged, unsent, received but unread).
  uint64_t snapshot_stream_bytes = 0;
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
};

struct ExportPolicy {
  uint64_t timeout_ms = 10'000;  // a move not fully answered by then is abandoned
  bool handover = true;          // a NAT handover token per client and move
  // Long-lived policy (seed 003 section 3.3): true when a connection is too young to be
  // worth a move; it is closed instead. Empty: every connection moves.
  std::function<bool(uint64_t connection_id)> too_young;
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
  void on_result(const SessionResult& result);
  // Also for an answer that could not be decoded (counted by the caller).
  void abandon(const std::string& reason);
  uint64_t on_time(uint64_t now_ms);
  uint64_t deadline() const { return finished_ ? UINT64_MAX : deadline_ms_; }
  bool started() const { return started_; }
  bool finished() const { return finished_; }
  const std::string& target() const { return report_.target; }

 private:
  struct InFlight {
    MovableSession* session = nullptr;  // nullptr once it moved
    std::vector<tcp_pcb*> pcbs;         // its legs' frozen pcbs, in leg order
    std::vector<const void*> clients;   // per leg: the client to tell (client legs)
    size_t report_index = 0;
    bool settled = false;
    uint64_t frozen_ns = 0;  // uv_hrtime() at its freeze
  };
  void note_thawed(const InFlight& item);
  SessionReport& record(MovableSession* session, const std::vector<SessionLeg>& legs, SessionOutcome outcome,
                        std::string reason, std::string label = {});
  void log_stayed(const std::string& name, const SessionReport& entry);
  void resume(InFlight& item, const std::string& reason);
  void finish();

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
  // Sessions that stay are logged one by one up to this many per move.
  static constexpr size_t max_stayed_logged = 20;
};

}  // namespace roam::migrate
