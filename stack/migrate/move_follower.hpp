// MoveFollower: the client's side of a server move (DESIGN.md section 4; seed 003). For
// every server its connections go to, it keeps one control channel (Noise XX over lwIP
// TCP, initiator), checks the server's key against the known hosts (trust on first use,
// or pinned), and registers the ids of its connections to that server. When the server
// sends an Address Change Message, the follower applies it only if the AcmFilter finds it
// fresh, about connections it has with that server, and to an acceptable address: then
// it rewrites exactly those connections (migrate::rewrite_remote), restarts their
// transmission, silences the old flows (late packets from the old server must not be
// answered with RST), acknowledges, and opens a channel to the new server. Anything else
// is dropped, counted, logged at most every few seconds, answered with a refusal, and
// changes nothing. Owned by roam-client; loop thread only.
//
// NAT handover (--handover always, the default, when the ACM carries a token): the
// rewritten connections stay silent while a HandoverInitiator sends each one's synthetic
// SYN; a connection restarts its transmission once the new server's SYN-ACK is in (or
// the handover gave up: then it tries the direct path). Each ACM's connections are
// followed as a batch, logged when all are answered ("handover to ...") and when all were
// heard from on the new path ("changeover to ...").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "stack/control/channel_connection.hpp"
#include "stack/control/channel_options.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "crypto/identity_key.hpp"
#include "crypto/known_hosts.hpp"
#include "stack/control/acm_filter.hpp"
#include "stack/lwip.hpp"
#include "stack/migrate/handover_initiator.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/node.hpp"
#include "base/rate_limited_log.hpp"
#include "base/uv_handle.hpp"

namespace roam {

struct MoveFollowerCounters {
  uint64_t channels_opened = 0;
  uint64_t channels_established = 0;
  uint64_t channels_failed = 0;    // handshake or framing failed, or the connection broke
  uint64_t servers_untrusted = 0;  // key mismatch, or unknown under --pin-keys
  uint64_t frames_forged = 0;      // did not authenticate (the channel is then reset)
  uint64_t frames_replayed = 0;    // authentic but an old counter (the channel is then reset)
  uint64_t frames_dropped = 0;     // any other bad frame
  uint64_t acms = 0;               // authenticated ACMs received
  uint64_t acms_applied = 0;
  uint64_t acms_refused = 0;  // failed the AcmFilter (by verdict below)
  uint64_t acms_replayed = 0;
  uint64_t acms_stale = 0;
  uint64_t acms_wrong_peer = 0;
  uint64_t acms_unknown_connections = 0;
  uint64_t acms_bad_address = 0;
  uint64_t unknown_ids = 0;  // ids named in applied ACMs that we do not have
  uint64_t connections_moved = 0;
  uint64_t registrations_sent = 0;
  uint64_t pokes = 0;                // repeated ACKs toward a new server not yet heard from
  uint64_t unanswered = 0;           // moved connections the new server never answered
  uint64_t handovers_unstarted = 0;  // the SYN could not be built or routed: direct path
};

class MoveFollower {
 public:
  MoveFollower(Node& node, const ChannelOptions& options);  // throws ConfigError
  ~MoveFollower();
  MoveFollower(const MoveFollower&) = delete;
  MoveFollower& operator=(const MoveFollower&) = delete;

  // A carrier connection is up (its id agreed): register it with its server.
  void track(tcp_pcb* pcb);
  void close();
  const MoveFollowerCounters& counters() const { return counters_; }
  std::string counters_text() const;

 private:
  struct Server;
  Server& server_for(const IpAddress& address);
  void open_channel(Server& server);
  void on_established(Server& server, ChannelConnection& channel);
  void on_message(Server& server, ChannelConnection& channel, const control::Message& message);
  void on_acm(Server& server, ChannelConnection& channel, const control::AddressChange& acm);
  void register_connections(Server& server);
  void on_closed(Server& server, const std::string& why);
  void refuse(ChannelConnection& channel, const control::AddressChange& acm, control::AcmVerdict verdict);
  void follow(const std::vector<tcp_pcb*>& pcbs, const IpAddress& new_address, uint16_t new_port,
              const std::optional<crypto::HandoverToken>& token);
  void await_new_path(const FlowKey& flow, uint64_t batch);
  void on_handover_done(const FlowKey& flow, bool answered);
  void on_heard(const FlowKey& flow);
  void poke_new_paths();
  void on_housekeeping();
  std::vector<control::ClientConnection> connections_with(const IpAddress& server) const;
  void save_known_hosts();

  // A moved connection until the new server is heard from: the new server stays silent
  // until our first packet reaches it, so if that one ACK is lost (and we have nothing
  // unacknowledged to retransmit) both ends would wait forever. We repeat it.
  struct AwaitingPath {
    FlowKey flow;  // as it is now, toward the new server (watched by guard_)
    int pokes_left;
    uint64_t batch;
    uint64_t next_poke_ms;  // loop time
    uint64_t interval_ms;   // doubles after each poke
  };
  // The connections one ACM moved, followed until each was heard from on the new path.
  struct Batch {
    std::string target;  // the new server's endpoint
    uint64_t started_ns = 0;
    size_t connections = 0;
    size_t handovers = 0;  // started
    size_t answered = 0;
    size_t failed = 0;
    size_t heard = 0;
    size_t unheard = 0;
  };
  void settle(uint64_t batch_id);

  Node& node_;
  ChannelOptions options_;
  std::unique_ptr<crypto::IdentityKey> key_;
  std::unique_ptr<SegmentMacGuard> segment_mac_;  // --segment-mac
  crypto::KnownHosts known_hosts_;
  std::map<std::string, std::unique_ptr<Server>> servers_;  // by carrier address
  // Freshness state per server key and address, kept across reconnects of a channel.
  std::map<std::pair<crypto::PublicKey, std::string>, control::AcmFilter> filters_;
  // Before the guard in the input chain: the synthetic SYN-ACK is not the new server's
  // first word on the new path.
  migrate::HandoverInitiator handover_;
  migrate::MigrationGuard guard_;
  std::vector<AwaitingPath> awaiting_;
  std::map<uint64_t, Batch> batches_;
  std::unordered_map<FlowKey, uint64_t, FlowKeyHash> handover_batch_;  // flow -> batch
  uint64_t next_batch_ = 1;
  UvHandle<uv_timer_t> poke_timer_;
  UvHandle<uv_timer_t> housekeeping_timer_;  // reopens channels that broke
  RateLimitedLog refusal_log_;
  RateLimitedLog bad_frame_log_;
  MoveFollowerCounters counters_;
  bool closed_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for deferred tasks
};

}  // namespace roam
