// MigrationService: roam-server's side of moving sessions between server processes
// (DESIGN.md section 4, "A server moves"; seed 000's Connector). Owned by the server app;
// loop thread only.
//
// Control port (kernel TCP, --control): roamctl sends migrate_request / status_request;
// peer servers send session frames. Unauthenticated in this version: bind it to loopback
// or a private management network (the control-channel issue adds keys and encryption).
//
// Old server, on "migrate to=B":
//   connect to B's control port -> for each movable session: app freeze, pcb freeze,
//   silence its flow, capture, send -> B answers each in order -> ok: free the pcb (no RST,
//   no FIN), drop the session; refused: unsilence, thaw, the session goes on unchanged ->
//   tell each client where its connections went: one Address Change Message per client
//   channel and old endpoint, naming the connections by id (ChannelServer) -> reply to
//   roamctl with the outcome and the time taken. A session whose client has no
//   authenticated control channel here (or never registered it) is not moved: it could
//   not be told, so it stays where it is.
// New server, on a session frame: decode (bad snapshots are refused and counted), import
// with its own address, rebuild the app session, park it until the client arrives.
//
// NAT handover (--handover always, the default): the old server draws one random token
// per client channel and move, sends it with each of that client's sessions and in the
// ACM; the new server's HandoverResponder answers the client's synthetic SYN made with
// it, rebinding the parked session to the address the client's NAT presents.
#pragma once

#include <uv.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "stack/control/channel_options.hpp"
#include "stack/control/channel_server.hpp"
#include "stack/migrate/frame_stream.hpp"
#include "stack/migrate/movable_session.hpp"
#include "stack/migrate/handover_responder.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/node.hpp"
#include "base/ip_address.hpp"
#include "base/uv_handle.hpp"

namespace roam {

// The server's session table, as the migration service sees it.
class SessionTable {
 public:
  virtual ~SessionTable() = default;
  virtual std::vector<MovableSession*> sessions() = 0;
  // Removes a session that moved away; the table destroys it (deferred).
  virtual void drop(MovableSession* session) = 0;
  // Takes ownership of an imported session.
  virtual void adopt(std::unique_ptr<MovableSession> session) = 0;
  virtual MovableSession::FinishedFn finished_callback() = 0;
  // The kinds of session this host can rebuild from a snapshot.
  virtual const SessionKinds& kinds() const = 0;
};

struct MigrationCounters {
  uint64_t exports_started = 0;
  uint64_t sessions_exported = 0;
  uint64_t sessions_export_failed = 0;
  uint64_t sessions_imported = 0;
  uint64_t imports_refused = 0;  // bad snapshot, unknown kind, no pcb memory, ...
  uint64_t bad_frames = 0;
  uint64_t sessions_without_channel = 0;  // not moved: their client could not be told
  uint64_t acms_undeliverable = 0;        // moved, but the client's channel closed meanwhile
  uint64_t sessions_closed_young = 0;     // long-lived policy: closed instead of moved
  uint64_t acms_global = 0;               // ACMs sent in the global form
  uint64_t moves_timed_out = 0;
  uint64_t parked_expired = 0;
};

struct MigrationConfig {
  // A move that the target has not fully answered in this time is abandoned: the old
  // server resumes every session still frozen.
  uint64_t move_timeout_ms = 10'000;
  // An imported session whose client never arrives is dropped after this time (the old
  // server may have resumed it after a timeout, or the client is gone).
  uint64_t parked_timeout_ms = 60'000;
  std::string control;  // HOST:PORT of the control listener ("" = none)
  ChannelOptions channel;
  // Long-lived policy (seed 003 section 3.3): only connections at least this old move;
  // younger ones are closed cleanly instead. 0: all move.
  uint64_t protect_older_than_ms = 0;
  IpAddress address4;  // this server's carrier addresses
  std::optional<IpAddress> address6;
};

class MigrationService {
 public:
  MigrationService(Node& node, SessionTable& table, MigrationConfig config);  // throws ConfigError
  ~MigrationService();
  MigrationService(const MigrationService&) = delete;
  MigrationService& operator=(const MigrationService&) = delete;

  void shutdown();
  // A connection was accepted here (its age counts from now; imported ones count as old:
  // they were old enough to move once).
  void connection_accepted(tcp_pcb* pcb);
  const MigrationCounters& counters() const { return counters_; }
  const migrate::MigrationGuard& guard() const { return guard_; }
  const migrate::HandoverResponder& handover() const { return responder_; }
  std::string status_json() const;

 private:
  struct Export;

  static void on_control_connection(uv_stream_t* server, int status) noexcept;
  void on_control_frame(FrameStream& stream, migrate::Frame frame);
  void start_export(FrameStream& requester, const std::string& request);
  void send_sessions(Export& job);
  void on_session_result(Export& job, const migrate::Frame& frame);
  void abandon_export(const std::string& reason);
  void finish_export();
  void import_session(FrameStream& stream, const migrate::Frame& frame);
  void announce_moves(const Export& job);
  void forget_stream(FrameStream* stream);
  void on_housekeeping();
  const IpAddress& own_address(uint8_t version) const;
  tcp_pcb* rebind_parked(const FlowKey& parked, const IpAddress& client, uint16_t port);

  Node& node_;
  SessionTable& table_;
  MigrationConfig config_;
  // Before the guard in the input chain: a synthetic SYN must never look like the
  // client's arrival to it.
  migrate::HandoverResponder responder_;
  migrate::MigrationGuard guard_;
  UvHandle<uv_tcp_t> control_listener_;
  std::map<FrameStream*, std::unique_ptr<FrameStream>> streams_;
  std::unique_ptr<Export> export_;
  std::unique_ptr<crypto::IdentityKey> key_;
  std::unique_ptr<SegmentMacGuard> segment_mac_;  // --segment-mac
  std::unique_ptr<ChannelServer> channels_;
  // Every second: move deadline, parked-session expiry.
  UvHandle<uv_timer_t> housekeeping_timer_;
  // Imported sessions whose client has not arrived yet -> when they expire (loop time).
  std::map<MovableSession*, uint64_t> parked_imports_;
  MigrationCounters counters_;
  // Long-lived policy: connection id -> loop time accepted, while younger than the limit.
  std::map<uint64_t, uint64_t> young_;
  bool shut_down_ = false;
};

}  // namespace roam
