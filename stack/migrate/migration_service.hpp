// MigrationService: a server's move engine, composed (DESIGN.md sections 4 and 11): the
// control channels its clients open (ChannelServer), the per-segment MAC, the Importer
// (parking, guard, NAT handover responder), at most one Exporter at a time, and the
// server-to-server transfer port. Moves start from code with move_sessions(); the control
// port (--control, kernel TCP) is one caller of it (roamctl migrate), and serves status
// and the session transfers of peer servers. Owned by the server app; loop thread only.
//
// Control port (kernel TCP, docs/PROTOCOL.md "Control port"): every connection runs a Noise
// XX handshake first (FrameStream over crypto::NoiseStream) and each request is checked
// against who the peer is (control_access.hpp): operators (--operators) start moves and
// read status, pool members (a certificate of this server's pool) hand sessions over.
// A server moves sessions only to a target that proves membership of its own pool, before
// anything freezes; the handover tokens and snapshots travel only inside that channel.
// Unauthenticated connections are closed after a handshake timeout; their number is capped.
//
// Old server, on move_sessions(to=B): take the connection to B's control port kept from an
// earlier move (control_pool.hpp, PROTOCOL.md 4.6; a stale one: the move starts again
// once on a new one), or connect to it -> ask B's carrier
// addresses (address_request; the summary names B by them) -> the Exporter freezes,
// captures and sends each movable session -> B answers each in order -> moved sessions are
// dropped here, refused ones resume -> each client is told with an Address Change Message
// on its channel (one per client and old endpoint; the global form when it names all of
// the client's registered connections) -> done(report).
// New server, on a session frame: Importer::import_session, then answer ok (this host's
// address) or the reason.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <span>
#include <map>
#include <optional>
#include <unordered_map>
#include <memory>
#include <string>
#include <vector>

#include "base/counters.hpp"
#include "base/histogram.hpp"
#include "base/ip_address.hpp"
#include "base/rate_limited_log.hpp"
#include "base/uv_handle.hpp"
#include "crypto/authorized_keys.hpp"
#include "crypto/pool_certificate.hpp"
#include "stack/control/channel_options.hpp"
#include "stack/control/channel_server.hpp"
#include "tun/udp_roam_table.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/migrate/control_access.hpp"
#include "stack/migrate/control_pool.hpp"
#include "stack/migrate/exporter.hpp"
#include "stack/migrate/frame_stream.hpp"
#include "stack/migrate/importer.hpp"
#include "stack/migrate/ratify.hpp"
#include "stack/migrate/server_show.hpp"
#include "stack/migrate/session_table.hpp"
#include "stack/node.hpp"

namespace roam {

// roam-server --precopy.
enum class PrecopyMode : uint8_t { off, on, automatic };

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
  uint64_t control_refused = 0;             // requests the peer was not authorized for
  uint64_t control_handshake_failed = 0;    // closed before authenticating (bad handshake, hang-up)
  uint64_t control_handshake_timeouts = 0;  // did not finish the handshake in time
  uint64_t control_over_capacity = 0;       // connections refused: too many unauthenticated
  uint64_t targets_refused = 0;             // move targets that are not members of this pool
  // Target side of reused control connections (PROTOCOL.md 4.6): pool members' idle
  // connections closed after control_idle_timeout_ms without a frame, and connections
  // closed because their key opened more than max_control_per_key.
  uint64_t control_idle_closed = 0;
  uint64_t control_over_key_cap = 0;
  // Seed 004's Informer (informer.cpp).
  uint64_t informs_started = 0;
  uint64_t informs_done = 0;            // ratified, notified and moved (some sessions may have stayed)
  uint64_t informs_failed = 0;          // the next proxy refused or could not be reached: nothing sent
  uint64_t inform_clients = 0;          // verified clients ratified and notified
  uint64_t transfers_sent = 0;          // transfer notifications (ACM scope transfer)
  uint64_t ratifies_accepted = 0;       // RATIFY frames taken here (whitelist mode)
  uint64_t ratifies_refused = 0;        // refused: malformed, replayed, stale, bad address
  uint64_t ratified_addresses = 0;      // addresses whitelisted by them
  // The last finished move out of here (tools/bench/run migrate reads them): how long its
  // longest-frozen session stayed frozen (freeze to release or thaw), of which capture and
  // encoding (freeze to frame handed to the transfer link), in microseconds; and the
  // stream bytes its snapshots carried.
  uint64_t last_move_frozen_us = 0;
  uint64_t last_move_capture_us = 0;
  uint64_t last_move_snapshot_bytes = 0;
  // The last move's timeline, CLOCK_MONOTONIC microseconds (uv_hrtime; one clock for every
  // process of a host, so a bench can line them up with its own): here, the old server,
  // the request came, the first session froze, the ACMs went to the clients; there, the
  // new server, the last session was imported, and its client was first heard from (the
  // connection unparked and its transmission restarted at once). 0: not yet.
  uint64_t last_move_request_at_us = 0;
  uint64_t last_move_frozen_at_us = 0;
  uint64_t last_move_acm_at_us = 0;
  uint64_t last_import_at_us = 0;
  uint64_t last_import_resumed_us = 0;
  // Inside the frozen interval, stage by stage (same clock; tools/bench/README.md
  // "Where the frozen interval goes"). Old server, the first session frozen: captured,
  // its session frame encoded, sealed and handed to the socket, the read that completed
  // the target's session_result, released (or thawed). New server, the last session
  // frame: the read that completed it, its session_result handed to the socket.
  uint64_t last_move_captured_at_us = 0;
  uint64_t last_move_encoded_at_us = 0;
  uint64_t last_move_sent_at_us = 0;
  uint64_t last_move_answer_read_at_us = 0;
  uint64_t last_move_released_at_us = 0;
  uint64_t last_import_read_at_us = 0;
  uint64_t last_import_answered_at_us = 0;
  // Pre-copy (PROTOCOL.md 4.3). Old server: rounds and bytes sent ahead of freezes, bytes
  // the snapshots then relied on, moves whose target disagreed (whole snapshots sent); the
  // last move's pre-copied bytes. New server: bytes taken, bytes used by splices, bytes
  // dropped unused (a failed or refused move, a replaced or over-budget stream, a closed
  // connection), chunks refused (malformed or over budget), deltas that did not match.
  uint64_t precopy_rounds = 0;
  uint64_t precopy_held_rounds = 0;  // of them, run with the sessions' output held
  uint64_t precopy_bytes_sent = 0;
  uint64_t precopy_bytes_relied = 0;
  uint64_t precopy_moves_refused = 0;
  uint64_t last_move_precopy_bytes = 0;
  uint64_t precopy_bytes_received = 0;
  uint64_t precopy_bytes_discarded = 0;
  uint64_t precopy_chunks_refused = 0;
  // Old server: moves that sent whole snapshots because the target did not announce
  // pre-copy (older, or --precopy off there), or (auto) too few bytes were queued.
  uint64_t precopy_skipped_target = 0;
  uint64_t precopy_skipped_idle = 0;
};

struct MigrationConfig {
  // A move that the target has not fully answered in this time is abandoned: the old
  // server resumes every session still frozen.
  uint64_t move_timeout_ms = 10'000;
  // --precopy: moves send queued stream bytes ahead of the freeze, only to a target that
  // announced it in its address answer (PROTOCOL.md 4.3; a server that predates it would
  // close the transfer on a precopy frame). on: whenever the target takes it; auto: also
  // only when the moving sessions queue more than precopy_auto_idle_bytes; off: never,
  // and this server does not announce it as a target either.
  PrecopyMode precopy = PrecopyMode::automatic;
  // Why 128 KiB: a move with nothing queued costs pre-copy nothing (no round runs), but
  // any queued byte buys at least one round trip to the target (the precopy_sync answer)
  // before the freeze, and bytes the peer acknowledges or the app reads meanwhile were
  // sent for nothing. What it saves is the queued bytes' transfer inside the frozen
  // interval. A connection whose tuned buffers never grew (it was never busy) holds at
  // most their initial 64 KiB send buffer + 64 KiB receive window (send_buffer_tuner.hpp,
  // receive_window_tuner.hpp): moving that whole costs ~10 ms at 100 Mbit/s between
  // servers, less than the round trip a WAN move would add. A busy one grows past it (the
  // stalled echo of integration_migrate_precopy queues 260-380 KB). 256 KiB would sit on
  // top of that busy echo and skip it about as often as not.
  uint64_t precopy_auto_idle_bytes = 128u << 10;
  size_t precopy_max_rounds = 2;
  // --precopy-hold: after the rounds, one more with the sessions' output held (files
  // downloads stop queueing), so the freeze carries what the app queued meanwhile: nothing.
  bool precopy_hold_output = true;
  // New server: the pre-copied bytes it holds for all peers together, at most.
  size_t precopy_budget_bytes = 256u << 20;
  // An imported session whose client never arrives is dropped after this time.
  uint64_t parked_timeout_ms = 60'000;
  std::string control;  // HOST:PORT of the control listener ("" = none)
  std::string operators_file;         // --operators: keys that may start moves and read status
  std::string pool_certificate_file;  // --pool-cert: this server's membership ("" = in no pool)
  bool status_open = false;           // --status-open: status for any authenticated peer
  uint64_t control_handshake_timeout_ms = 10'000;
  size_t max_unauthenticated_control = 64;
  // Old server: keep control connections to move targets open between moves and reuse
  // them (roam-server --control-keep; PROTOCOL.md 4.6). Off: one connection per move.
  bool keep_control = true;
  migrate::ControlPoolLimits control_pool;
  // Target side: a pool member (not an operator) whose connection carried no frame this
  // long is closed; a key has at most this many authenticated connections here (a new
  // one closes its oldest).
  uint64_t control_idle_timeout_ms = 120'000;
  size_t max_control_per_key = 4;
  ChannelOptions channel;
  // Long-lived policy (seed 003 section 3.3): only connections at least this old move;
  // younger ones are closed cleanly instead. 0: all move.
  uint64_t protect_older_than_ms = 0;
  IpAddress address4;  // this server's carrier addresses
  // --udp-roam: gives each client that can send link rebinds its link key (unset: none).
  ChannelServer::LinkKeyIssuer link_key_issuer;
  const UdpRoamTable* link_roam = nullptr;  // its counters go into status (owned by the link)
  std::optional<IpAddress> address6;
  // Seed 004's Informer. --next-proxy: the control port (HOST:PORT) of the pool member an
  // inform without a target sends clients to ("": none; `roamctl inform --to` names one).
  std::string next_proxy;
  // How long whitelist mode lasts after an inform (here) and after a RATIFY (there).
  uint64_t inform_hold_ms = 60'000;
  // Whether this server, after informing, also admits only the clients it ratified.
  bool whitelist_after_inform = true;
  // Puts addresses on this server's whitelist and turns whitelist mode on for hold_ms
  // (the app's defense::SourceWhitelist; unset: RATIFY is refused).
  std::function<void(std::span<const IpAddress>, uint64_t hold_ms)> whitelist;
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
  // Keep an authenticated control connection to this target (a pool member's control
  // port) open from now on, before any move (--control-keep; not this server's own port).
  void keep_control_to(const std::string& target) {
    if (control_pool_ && target != config_.control) control_pool_->want(target);
  }

  // Seed 004's Informer (informer.cpp): the clients of every authenticated control channel
  // here leave for `target` (a pool member's control port; "" = config.next_proxy). In
  // order: ask the target's carrier addresses; RATIFY the clients' addresses there (it
  // whitelists them); send each client a transfer notification (ACM scope transfer: new
  // connections go to the target); move every movable session there (move_sessions);
  // whitelist them here too (whitelist_after_inform). `done` gets one line, "ok ..." or
  // "error ...". False with `error` when an inform or a move runs, or there is no target.
  using InformDoneFn = std::function<void(const std::string& summary)>;
  bool inform(std::string target, std::string reason, InformDoneFn done, std::string& error);
  bool informing() const { return inform_ != nullptr; }

  void shutdown();
  // A connection was accepted here (its age counts from now; imported ones count as old:
  // they were old enough to move once).
  void connection_accepted(tcp_pcb* pcb);

  // Who tells an imported origin leg's origin where it went (a proxy's Follower:
  // Follower::announce_moved).
  void set_tell_origin(migrate::Importer::TellOriginFn tell_origin) { importer_->set_tell_origin(std::move(tell_origin)); }
  // A session rebuilt here from a client-held checkpoint (PROTOCOL.md 14.5): a session
  // payload (control_frame.hpp) imported and parked like a transferred one. Ok: the
  // address it got here.
  Result<IpAddress, std::string> import_resumed(std::span<const uint8_t> session_payload);
  // Whether this server answers the NAT handover (`--handover off` turns it off): a resumed
  // connection gets a token only then (PROTOCOL.md 14.3).
  bool handover_enabled() const { return config_.channel.handover; }
  // This server's pool membership certificate (empty: in no pool), for a HELLO.
  const std::vector<uint8_t>& credential() const { return credential_; }
  const MigrationCounters& counters() const { return counters_; }
  const CounterRegistry& registry() const { return registry_; }
  // Where other components of this server register their counters (the SYN defense).
  CounterRegistry& registry() { return registry_; }
  const migrate::MigrationGuard& guard() const { return importer_->guard(); }
  // The connection is parked here: imported (or resumed), its client not heard yet. It is
  // this server's as much as a live one (no pcb lookup finds it yet).
  bool connection_parked(uint64_t id) const { return importer_->parked_id(id); }
  const migrate::HandoverResponder& handover() const { return importer_->handover(); }
  // The control channels' server (a roaming pool member sends ROAM_UPDATEs through it).
  ChannelServer& channels() { return *channels_; }
  // The counters, then "unmovable": the sessions that cannot move now (at most
  // max_unmovable_listed; sessions_unmovable counts them all), each with kind, first
  // leg's 4-tuple, label and reason.
  std::string status_json();
  // What `roamctl show` prints (status_request "show" / "show text").
  migrate::ServerShow show();
  static constexpr size_t max_unmovable_listed = 100;

 private:
  class ChannelDirectory;

  struct ControlConnection {
    std::unique_ptr<FrameStream> stream;
    migrate::ControlPeer peer;
    uint64_t opened_ms = 0;
    std::unique_ptr<migrate::PrecopyStore> precopy;  // what this peer pre-copied (made on its first chunk)
    uint64_t last_frame_ms = 0;  // loop time of its last frame (idle close)
  };

  static void on_control_connection(uv_stream_t* server, int status) noexcept;
  bool authenticate_control_peer(FrameStream& stream);
  // for_move: the running move's target (its refusal is reported, its certificate goes
  // into the ACMs); else a connection opened in advance, only checked.
  bool authenticate_target(FrameStream& stream, const std::string& target, bool for_move = true);
  std::unique_ptr<FrameStream> open_target(const std::string& target, FrameStream::FrameFn on_frame,
                                           FrameStream::ClosedFn on_closed, FrameStream::ConnectedFn on_connected,
                                           bool for_move);
  // The move's exporter exists: take a cached connection to its target, or open one.
  void begin_move(MoveRequest request);
  // The target's connection is authenticated (new) or was taken from the cache: ask its
  // addresses, maybe freeze right behind.
  void target_ready();
  void on_transfer_closed(const std::string& reason);
  // The running move's kept connection failed before its first answer: abandon the move
  // (its sessions resume here) and start it again once on a new connection. False: not
  // such a case (the caller fails the move).
  bool retry_on_new_connection(const std::string& reason);
  void close_idle_control(uint64_t now);
  void cap_connections_of_key(FrameStream& stream);
  void refuse(FrameStream& stream, migrate::ControlAccess access, migrate::FrameType type);
  void expire_unauthenticated(uint64_t now);
  void on_control_frame(FrameStream& stream, migrate::Frame frame);
  void start_requested_move(FrameStream& requester, const std::string& request);
  void on_transfer_answer(const migrate::Frame& frame);
  std::string target_carrier_address(const migrate::ExportReport& report) const;
  struct Unmovable {
    size_t total = 0;
    std::vector<std::pair<MovableSession*, StayReason>> listed;
  };
  Unmovable unmovable_sessions(size_t max_listed);
  void on_move_done(const migrate::ExportReport& report);
  void import_session(FrameStream& stream, const migrate::Frame& frame);
  void take_precopy(ControlConnection& connection, const migrate::Frame& frame);
  void answer_precopy_sync(ControlConnection& connection);
  void forget_precopy(ControlConnection& connection);
  // Old server: the target's answer to a precopy_sync; then another round or the freeze.
  void on_precopy_answer(const migrate::Frame& frame);
  void precopy_or_start();
  // One inform, from its start to its summary.
  struct InformRun {
    std::string target;  // the next proxy's control port
    std::string reason;  // "flood detector", "operator"
    InformDoneFn done;
    std::unique_ptr<FrameStream> stream;  // to the target's control port
    std::vector<IpAddress> clients;       // the verified clients' carrier addresses
    std::vector<uint8_t> target_credential;
    std::vector<IpAddress> target_addresses;  // its carrier addresses (address_request)
    bool addresses_known = false;
    size_t ratify_frames = 0;   // sent
    size_t ratify_answers = 0;  // answered "ok"
    bool moving = false;        // ratified and notified: the sessions' move runs
    size_t transfers = 0;
    uint64_t started_ms = 0;
    std::string refusal;  // why the target was refused in its handshake
  };
  void on_inform_answer(const migrate::Frame& frame);
  void notify_and_move(InformRun& run);
  void send_transfers(InformRun& run);
  void finish_inform(const std::string& summary, bool ok);
  void take_ratify(FrameStream& stream, const migrate::Frame& frame);
  void start_requested_inform(FrameStream& requester, const std::string& request);
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
  std::unique_ptr<migrate::ControlPool> control_pool_;  // kept connections to targets (nullptr: off)
  MoveRequest current_request_;  // the running move's, for its one retry
  bool transfer_cached_ = false;   // transfer_ came from control_pool_
  bool transfer_retried_ = false;  // this move already retried on a new connection
  bool retry_pending_ = false;     // the move is abandoned only to start again on a new one
  uint64_t transfer_started_ms_ = 0;  // loop time the move's address_request went (or its connect began)
  // Deferred work checks it: the service may be gone when the loop runs it.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  migrate::Exporter::DoneFn move_done_;
  UvHandle<uv_tcp_t> control_listener_;
  std::map<FrameStream*, ControlConnection> streams_;
  std::optional<crypto::AuthorizedKeys> operators_;
  std::optional<crypto::PoolCertificate> pool_certificate_;
  std::vector<uint8_t> credential_;  // the certificate's bytes, shown in handshakes
  std::string transfer_refusal_;     // why the current move's target was refused
  std::vector<IpAddress> target_addresses_;  // the current move's target's carrier addresses
  bool awaiting_precopy_sync_ = false;       // the current move's last round awaits its answer
  bool awaiting_address_ = false;            // the current move's address_request awaits its answer
  size_t precopy_in_use_ = 0;                // bytes held by every PrecopyStore here
  RateLimitedLog refusal_log_;
  UvHandle<uv_timer_t> housekeeping_timer_;  // every second: deadlines, expiry, claims
  MigrationCounters counters_;
  CounterRegistry registry_;
  // Long-lived policy: connection id -> loop time accepted, while younger than the limit.
  std::map<uint64_t, uint64_t> young_;
  // Connection id -> when it was accepted or arrived by a move here (roamctl show's age),
  // and for arrivals when the move came and when its client was first heard after it.
  // Forgotten with the connection (housekeeping).
  std::unordered_map<uint64_t, uint64_t> seen_;
  struct MovedIn {
    uint64_t imported_ms = 0;
    uint64_t imported_ns = 0;  // uv_hrtime(): the histogram's start, finer than the loop's ms
    std::optional<uint64_t> arrived_ms;
  };
  std::unordered_map<uint64_t, MovedIn> moved_in_;
  // Per imported session whose client arrived: seconds from its import until then
  // (roamstack_changeover_seconds on the server's metrics endpoint).
  Histogram changeover_seconds_{changeover_seconds_buckets()};
  std::unique_ptr<InformRun> inform_;  // the inform running now
  migrate::RatifyFilter ratify_filter_;
  uint64_t next_ratify_sequence_ = 0;
  bool shut_down_ = false;
};

}  // namespace roam
