// MigrationService: a server's move engine, composed (DESIGN.md sections 4 and 11): the
// control channels its clients open (ChannelServer), the per-segment MAC, the Importer
// (parking, guard, NAT handover responder), at most one Exporter at a time, and the
// server-to-server transfer port. Moves start from code with move_sessions(); the control
// port (--control, kernel TCP) is one caller of it (roamctl migrate), and serves status
// and the session transfers of peer servers. Owned by the server app; loop thread only.
//
// Control port: unauthenticated in this version (issue 11 adds keys): bind it to loopback
// or a private management network.
//
// Old server, on move_sessions(to=B): connect to B's control port -> the Exporter freezes,
// captures and sends each movable session -> B answers each in order -> moved sessions are
// dropped here, refused ones resume -> each client is told with an Address Change Message
// on its channel (one per client and old endpoint; the global form when it names all of
// the client's registered connections) -> done(report).
// New server, on a session frame: Importer::import_session, then answer ok (this host's
// address) or the reason.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "base/counters.hpp"
#include "base/ip_address.hpp"
#include "base/uv_handle.hpp"
#include "stack/control/channel_options.hpp"
#include "stack/control/channel_server.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/migrate/exporter.hpp"
#include "stack/migrate/frame_stream.hpp"
#include "stack/migrate/importer.hpp"
#include "stack/migrate/session_table.hpp"
#include "stack/node.hpp"

namespace roam {

struct MigrationCounters {
  uint64_t exports_started = 0;
  uint64_t sessions_exported = 0;
  uint64_t sessions_export_failed = 0;
  uint64_t bad_frames = 0;
  uint64_t sessions_without_channel = 0;  // not moved: their client could not be told
  uint64_t acms_undeliverable = 0;        // moved, but the client's channel closed meanwhile
  uint64_t sessions_closed_young = 0;     // long-lived policy: closed instead of moved
  uint64_t acms_global = 0;               // ACMs sent in the global form
  uint64_t moves_timed_out = 0;
};

struct MigrationConfig {
  // A move that the target has not fully answered in this time is abandoned: the old
  // server resumes every session still frozen.
  uint64_t move_timeout_ms = 10'000;
  // An imported session whose client never arrives is dropped after this time.
  uint64_t parked_timeout_ms = 60'000;
  std::string control;  // HOST:PORT of the control listener ("" = none)
  ChannelOptions channel;
  // Long-lived policy (seed 003 section 3.3): only connections at least this old move;
  // younger ones are closed cleanly instead. 0: all move.
  uint64_t protect_older_than_ms = 0;
  IpAddress address4;  // this server's carrier addresses
  std::optional<IpAddress> address6;
};

// What to move, for move_sessions().
struct MoveRequest {
  std::string target;                     // the target's control port, HOST:PORT
  size_t limit = SIZE_MAX;                // at most this many sessions
  std::vector<MovableSession*> sessions;  // empty: every session of the table
};

class MigrationService {
 public:
  MigrationService(Node& node, SessionTable& table, MigrationConfig config);  // throws ConfigError
  ~MigrationService();
  MigrationService(const MigrationService&) = delete;
  MigrationService& operator=(const MigrationService&) = delete;

  // Starts a move. False with `error` when one is already running or the target is not
  // HOST:PORT; otherwise `done` runs exactly once, with each session's outcome.
  bool move_sessions(MoveRequest request, migrate::Exporter::DoneFn done, std::string& error);
  bool moving() const { return exporter_ != nullptr; }

  void shutdown();
  // A connection was accepted here (its age counts from now; imported ones count as old:
  // they were old enough to move once).
  void connection_accepted(tcp_pcb* pcb);

  const MigrationCounters& counters() const { return counters_; }
  const CounterRegistry& registry() const { return registry_; }
  const migrate::MigrationGuard& guard() const { return importer_->guard(); }
  const migrate::HandoverResponder& handover() const { return importer_->handover(); }
  std::string status_json() const { return registry_.to_json(); }

 private:
  class ChannelDirectory;

  static void on_control_connection(uv_stream_t* server, int status) noexcept;
  void on_control_frame(FrameStream& stream, migrate::Frame frame);
  void start_requested_move(FrameStream& requester, const std::string& request);
  void on_transfer_answer(const migrate::Frame& frame);
  void on_move_done(const migrate::ExportReport& report);
  void import_session(FrameStream& stream, const migrate::Frame& frame);
  void forget_stream(FrameStream* stream);
  void on_housekeeping();
  void register_counters();

  Node& node_;
  SessionTable& table_;
  MigrationConfig config_;
  std::unique_ptr<crypto::IdentityKey> key_;
  std::unique_ptr<SegmentMacGuard> segment_mac_;  // --segment-mac
  std::unique_ptr<ChannelServer> channels_;
  std::unique_ptr<ChannelDirectory> directory_;
  std::unique_ptr<migrate::Importer> importer_;
  std::unique_ptr<migrate::Exporter> exporter_;  // the move running now
  std::unique_ptr<FrameStream> transfer_;        // to the current move's target
  migrate::Exporter::DoneFn move_done_;
  UvHandle<uv_tcp_t> control_listener_;
  std::map<FrameStream*, std::unique_ptr<FrameStream>> streams_;
  UvHandle<uv_timer_t> housekeeping_timer_;  // every second: deadlines, expiry, claims
  MigrationCounters counters_;
  CounterRegistry registry_;
  // Long-lived policy: connection id -> loop time accepted, while younger than the limit.
  std::map<uint64_t, uint64_t> young_;
  bool shut_down_ = false;
};

}  // namespace roam
