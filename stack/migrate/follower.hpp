// Follower: the client's side of a server move (DESIGN.md section 4; seed 003), started
// and watched from code. For every server its connections go to, it keeps one control
// channel (Noise XX over lwIP TCP, initiator), checks the server's key against the known
// hosts (trust on first use, or pinned), and registers the ids of its connections to that
// server. When the server sends an Address Change Message, the follower applies it only
// if the AcmFilter finds it fresh, about connections it has with that server, and to an
// acceptable address: then it rewrites exactly those connections (rewrite_remote),
// silences the old flows (late packets from the old server must not be answered with
// RST), runs the NAT handover when the ACM carries a token (HandoverInitiator: the
// connections stay silent until their synthetic SYN is answered), restarts their
// transmission, acknowledges, and opens a channel to the new server. Anything else is
// dropped, counted, logged at most every few seconds, answered with a refusal, and
// changes nothing. A client follows only toward a member of the pool its server proved
// membership of (the ACM carries the target's pool certificate), and then accepts at the
// new address only the key that certificate names. Each ACM's connections are followed as a batch (ChangeoverTracker)
// until each was heard from on the new path; the batch's report goes to `on_moved`.
// The state machines it owns (HandoverInitiator, MigrationGuard, ChangeoverTracker) are
// fed the time; one timer of the follower runs them at the earliest of their deadlines.
// Owner proofs (issue 11): the app opens the channel to each server before its carriers
// (prepare, when_ready), and each carrier opened while the channel is trusted carries the
// channel's owner proof in its SYN (syn_option_for), so only this client's key can
// register it at the server, there and wherever it moves.
// Owned by the client app (or a proxy's origin leg); loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/rate_limited_log.hpp"
#include "base/uv_handle.hpp"
#include "crypto/identity_key.hpp"
#include "crypto/known_hosts.hpp"
#include "crypto/pool_certificate.hpp"
#include "stack/control/acm_filter.hpp"
#include "stack/control/channel_connection.hpp"
#include "stack/control/channel_options.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/lwip.hpp"
#include "stack/migrate/changeover_tracker.hpp"
#include "stack/migrate/handover_initiator.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/output_hold.hpp"
#include "stack/node.hpp"
#include "stack/pcb_owner.hpp"

namespace roam {

struct FollowerCounters {
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
  uint64_t acms_untrusted_target = 0;  // the target is not a member of the sender's pool
  uint64_t unknown_ids = 0;  // ids named in applied ACMs that we do not have
  uint64_t connections_moved = 0;
  uint64_t registrations_sent = 0;
  uint64_t handovers_unstarted = 0;  // the SYN could not be built or routed: direct path
  uint64_t carriers_waited = 0;      // carriers held until their server's channel settled
  uint64_t carriers_wait_expired = 0;  // ...and opened without the proof after channel_wait_ms
  // Seed 003, "a client moves": our own end moved, and we told the peer.
  uint64_t moves_announced = 0;   // ACMs sent to peers
  uint64_t moves_applied = 0;     // ...the peer armed its handover (our SYN follows)
  uint64_t moves_rebound = 0;     // ...the peer pointed the connections at us directly
  uint64_t moves_refused = 0;     // ...the peer refused
  uint64_t moves_refused_reset = 0;  // connections reset because their move was refused
  uint64_t moves_abandoned = 0;   // ...no channel or no answer in time
  uint64_t own_address_changes = 0;  // change_own_address calls that changed the node
  // Seed 004's Informer: transfer notifications (ACM scope transfer) applied, and the
  // carriers still opening that they sent to the new server.
  uint64_t transfers_applied = 0;
  uint64_t connects_redirected = 0;
};

class Follower {
 public:
  // A server endpoint that moved as a whole: an applied ACM took every connection this
  // client had there (global scope, or it named them all). New connections for it belong
  // at `to` as well.
  struct ServerMove {
    IpAddress from;
    uint16_t from_port = 0;  // 0: every port of `from`
    IpAddress to;
    uint16_t to_port = 0;  // the port at `to` (0: each connection keeps its own)
  };
  struct Events {
    // A batch of connections one ACM moved has settled (every one heard on the new path,
    // ended, or given up on).
    std::function<void(const migrate::ChangeoverReport&)> on_moved;
    // Right after such an ACM was applied (the app re-points its forwards: issue 12), and
    // after a transfer notification (seed 004: the server sends its clients elsewhere).
    std::function<void(const ServerMove&)> on_server_moved;
    // A trusted server gave this client a link key (LINK_KEY, PROTOCOL.md 3.8).
    std::function<void(const IpAddress& server, const control::LinkKeyGrant&)> on_link_key;
    // A trusted server sent a ROAM_UPDATE (PROTOCOL.md 13.4); the app applies it.
    std::function<void(const IpAddress& server, const control::RoamUpdate&)> on_roam_update;
    // A trusted server sent a sealed checkpoint (CHECKPOINT, PROTOCOL.md 14.3); the app keeps it.
    std::function<void(const IpAddress& server, const control::CheckpointPush&)> on_checkpoint;
    // A trusted server answered a RESUME (RESUMED, PROTOCOL.md 14.3).
    std::function<void(const IpAddress& server, const control::ResumeAnswer&)> on_resume_answer;
    // A trusted server sent an ERROR (logged here too); e.g. 3: no ROAM_UPDATE to give.
    std::function<void(const IpAddress& server, const control::ErrorMessage&)> on_error;
  };

  Follower(Node& node, const ChannelOptions& options, Events events = {});  // throws ConfigError
  ~Follower();
  Follower(const Follower&) = delete;
  Follower& operator=(const Follower&) = delete;

  // A carrier connection is up (its id agreed): register it with its server.
  void track(tcp_pcb* pcb);

  // Client-held checkpoints (PROTOCOL.md 14). Sends `message` on the trusted channel to
  // `server`; false when there is none now (when_ready first).
  bool send_to(const IpAddress& server, const control::Message& message);
  // `server` rebuilt this connection from a checkpoint (RESUMED, status resumed): points it
  // there (same port), silences its old flow, restarts its transmission (its first segment
  // unparks the import there) and registers it with that server. With a handover token
  // (and the handover on here) the connection stays silent until its synthetic SYN is
  // answered, exactly as after an ACM: a strict NAT in front of this client admits the
  // flow to the new server only after that handshake (PROTOCOL.md 6, 14.5).
  void resumed_at(tcp_pcb* pcb, const IpAddress& server, const std::optional<crypto::HandoverToken>& token);

  // Owner proofs (stack/control/owner_proof.hpp). Opens the control channel to `server`
  // now, so that carriers opened later can prove their owner in their SYN.
  void prepare(const IpAddress& server);
  // Runs `then` once a carrier to `server` can carry the owner proof: at once when the
  // channel is trusted, else (deferred) when it is established, failed or distrusted, or
  // after channel_wait_ms at most: a carrier is never refused for want of a channel, it
  // is only opened without the proof. Dropped unrun if the follower closes first.
  void when_ready(const IpAddress& server, std::function<void()> then);
  // What a carrier to `server` carries in its SYN: the owner proof of the trusted channel
  // to it, or nullptr (no channel yet, or the server lacks the capability).
  std::shared_ptr<const SynOptionSource> syn_option_for(const IpAddress& server);
  // The capabilities of `server`'s HELLO on a trusted channel (0: no such channel).
  uint32_t peer_capabilities(const IpAddress& server) const;
  static constexpr uint64_t channel_wait_ms = 2000;
  void close();

  // Seed 003, "a client moves": this host's end of connections now has another address
  // (an import placed them here: a proxy's origin leg; or this host's own address
  // changed). Their pcbs carry the new local address already; they may be parked (an
  // import, not yet in lwIP). Each peer is told with an ACM (our connections' ids, the
  // old and new address, a fresh handover token, our pool certificate) on a channel
  // opened from here. The peer answers `rebound` when the new address is where the
  // channel comes from (it points the connections at us and retransmits: a parked import
  // unparks on that), or `applied`: then each live connection sends its synthetic SYN
  // (HandoverInitiator) and the peer rebinds it to where that SYN came from, through
  // whatever NAT. Unanswered announcements are given up after announce_timeout_ms.
  struct MovedEnd {
    tcp_pcb* pcb = nullptr;
    uint64_t connection_id = 0;
    IpAddress old_local;
  };
  // Announcements made in one loop turn (an import of many sessions) are sent together,
  // one ACM per peer (deferred).
  void announce_moved(const std::vector<MovedEnd>& ends);
  static constexpr uint64_t announce_timeout_ms = 10'000;

  // This host's own address changed from `old_local` to `new_local` (its link says so:
  // roam-client --addr-from-device, --addr-file). In this order: every connection bound
  // to the old address is rebound to the new one without a restart and its output held
  // (OutputHold: nothing may reach the peer, or a NAT, before the peer was told and the
  // synthetic SYN went out); the control channels are closed (their server knows them by
  // the old address; lwIP resets them from it); the node's address changes
  // (Node::change_address); then announce_moved tells each peer, on a channel opened from
  // the new address, and its answer releases the connections (rebound: restart; applied:
  // the handover's SYN first). Connections still opening (no id yet) just go on from the
  // new address. The node's error when it has no such address (nothing changed then).
  Result<Ok, std::string> change_own_address(const IpAddress& old_local, const IpAddress& new_local);

  // An Address Change Message that arrived authenticated from `server` (whose channel key
  // is `server_key`), checked and, when it passes, applied. The channel path calls this;
  // tests call it directly. `now_unix_ms`: the wall clock the ACM's age is judged by.
  // `server_pool`: the pool the server proved membership of (its HELLO); the ACM's
  // target must be a member of it.
  control::AcmVerdict apply_acm(const IpAddress& server, const crypto::PublicKey& server_key,
                                const std::optional<crypto::PoolPublicKey>& server_pool,
                                const control::AddressChange& acm, uint64_t now_unix_ms);

  const FollowerCounters& counters() const { return counters_; }
  const migrate::ChangeoverCounters& changeover_counters() const { return tracker_.counters(); }
  const Histogram& changeover_seconds() const { return tracker_.changeover_seconds(); }
  const migrate::HandoverInitiator& handover() const { return handover_; }
  const migrate::OutputHoldCounters& hold_counters() const { return hold_.counters(); }
  std::string counters_text() const;

 private:
  struct Server;
  Server& server_for(const IpAddress& address);
  void open_channel(Server& server);
  void on_established(Server& server, ChannelConnection& channel);
  Result<std::optional<crypto::PoolPublicKey>, std::string> pool_of(const control::Hello& hello,
                                                                    const crypto::PublicKey& key) const;
  void on_message(Server& server, ChannelConnection& channel, const control::Message& message);
  void on_acm(ChannelConnection& channel, const control::AddressChange& acm);
  struct EndToAnnounce {
    FlowKey flow;  // as it is now (the new local address)
    uint64_t connection_id = 0;
    IpAddress old_local;
  };
  void flush_announcements();
  void send_announcements(Server& server);
  void on_announcement_ack(Server& server, const control::Ack& ack);
  void expire_announcements(Server& server, uint64_t now_ms);
  void release_held(const std::vector<FlowKey>& flows);
  void register_connections(Server& server);
  void on_closed(Server& server, const std::string& why);
  void release_waiters(Server& server, bool all);
  void count_refusal(control::AcmVerdict verdict);
  size_t redirect_opening(const IpAddress& old_remote, uint16_t old_port, const IpAddress& new_remote,
                          uint16_t new_port);
  void follow(const std::vector<tcp_pcb*>& pcbs, const IpAddress& new_address, uint16_t new_port,
              const std::optional<crypto::HandoverToken>& token);
  void await_new_path(const FlowKey& flow, uint64_t batch);
  void on_handover_done(const FlowKey& flow, bool answered);
  // Runs the handover, the guard and the tracker, then arms timer_ for the earliest of
  // their next deadlines.
  void run_machines();
  // The pcb of a flow a changeover follows, in O(1) (by its id).
  tcp_pcb* moving_pcb(const FlowKey& flow) const;
  void on_housekeeping();
  std::vector<control::ClientConnection> connections_with(const IpAddress& server) const;
  void save_known_hosts();

  Node& node_;
  ChannelOptions options_;
  Events events_;
  std::unique_ptr<crypto::IdentityKey> key_;
  std::unique_ptr<SegmentMacGuard> segment_mac_;  // --segment-mac
  crypto::KnownHosts known_hosts_;
  std::map<std::string, std::unique_ptr<Server>> servers_;  // by carrier address
  // Freshness state per server key and address, kept across reconnects of a channel.
  std::map<std::pair<crypto::PublicKey, std::string>, control::AcmFilter> filters_;
  migrate::HandoverInitiator handover_;
  migrate::MigrationGuard guard_;
  migrate::ChangeoverTracker tracker_;
  migrate::OutputHold hold_;  // our connections whose own address moved, until the peer answers
  // The flows the tracker follows -> their connection ids: each is looked at several times
  // (handover done, pokes), and a walk of every pcb each time made a move of 10,000
  // connections quadratic. Cleared when no batch is open.
  std::unordered_map<FlowKey, uint64_t, FlowKeyHash> moving_ids_;
  UvHandle<uv_timer_t> timer_;               // armed for the machines' earliest deadline
  UvHandle<uv_timer_t> housekeeping_timer_;  // reopens channels that broke
  std::vector<EndToAnnounce> to_announce_;  // until the deferred flush
  uint64_t next_sequence_ = 0;  // of the ACMs we send (seed 003): grows across restarts too
  RateLimitedLog refusal_log_;
  RateLimitedLog bad_frame_log_;
  FollowerCounters counters_;
  bool closed_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);  // for deferred tasks
};

}  // namespace roam
