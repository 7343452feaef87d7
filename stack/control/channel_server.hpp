// ChannelServer: roam-server's end of the control channels (DESIGN.md section 5). Clients
// open one to each server they use (lwIP TCP, --channel-port), authenticate with Noise XX
// and register the ids of their connections to this server; the migration service then
// tells each client where its connections went with an Address Change Message on that
// client's channel, and counts the client's ACK. Loop thread only.
//
// A registration is accepted only for a connection the registering client owns (issue
// 11). A carrier whose SYN carried an owner proof (stack/control/owner_proof.hpp) is owned
// by the proving channel's client key, stored with the pcb and moved with it: only a
// channel with that key may register it. A connection without an owner (opened before
// the client's channel was up, or by a client without the capability) is registered by
// the old rule, same carrier address, and that first registration binds its owner, so
// no later one from another key takes it over ("last registration wins" is gone); with
// `require_owner_proof` it is not registered at all. A refused registration changes
// nothing and is counted; the client gets one ERROR not_your_connection per frame.
// Bounded work: O(1) per id, at most max_registered_ids registered and max_held_ids held
// per channel, and a channel that draws max_refusals refusals is closed.
// An id with no connection here YET is held (bounded) and checked again when it is looked
// up: the registration can overtake the last ACK of the connection's own handshake, or
// reach a new server while the connection's import is still parked. Every lookup is O(1)
// (find_pcb_by_connection_id, and held ids indexed by id), so a move of N connections,
// which claims each one as it unparks, costs O(N), not O(N^2) walks.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "stack/control/channel_connection.hpp"
#include "stack/control/channel_options.hpp"
#include "stack/control/owner_proof.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "crypto/handover_mac.hpp"
#include "crypto/identity_key.hpp"
#include "crypto/pool_certificate.hpp"
#include "stack/control/messages.hpp"
#include "stack/node.hpp"
#include "stack/tcp_listener.hpp"
#include "base/rate_limited_log.hpp"

namespace roam {

struct ChannelServerCounters {
  uint64_t roam_updates_sent = 0;  // ROAM_UPDATEs (PROTOCOL.md 13.4)
  uint64_t roam_updates_unavailable = 0;  // ERROR 3 to a new channel: no schedule to give
  uint64_t channels_accepted = 0;
  uint64_t channels_established = 0;
  uint64_t channels_failed = 0;  // handshake failed or framing broke
  uint64_t registrations = 0;
  uint64_t registrations_refused = 0;  // an id this server has, but not the channel's (all reasons)
  uint64_t registrations_foreign = 0;  // ...owned by another client key (proven or bound)
  uint64_t registrations_unproven = 0;          // owner-less, accepted by address; owner bound
  uint64_t registrations_unproven_refused = 0;  // owner-less under require_owner_proof
  uint64_t registrations_over_cap = 0;  // ids beyond a channel's registered or held cap
  uint64_t channels_closed_refusals = 0;  // channels closed for drawing too many refusals
  uint64_t registrations_pending = 0;  // ids not (yet) known here when registered
  uint64_t frames_dropped = 0;         // forged, replayed or undecodable
  uint64_t unexpected_messages = 0;
  uint64_t acms_sent = 0;
  uint64_t acms_applied = 0;
  uint64_t acms_refused = 0;
  uint64_t client_errors = 0;
  uint64_t handshakes_timed_out = 0;     // closed: no Noise handshake within the limit
  uint64_t channels_refused = 0;         // reset at accept: too many half-open channels
  uint64_t channels_refused_source = 0;  // of those, because of the per-address cap
  // Peer moves (seed 003, "a client moves": an ACM from the channel's client).
  uint64_t peer_moves = 0;          // ACMs received from clients
  uint64_t peer_moves_applied = 0;  // every connection named armed for the handover
  uint64_t peer_moves_refused = 0;  // all reasons below; nothing changed
  uint64_t peer_moves_stale = 0;     // issued too long ago, in the future, or an old sequence
  uint64_t peer_moves_malformed = 0;  // no token, no connection, global scope
  uint64_t peer_moves_unknown = 0;    // a connection this server does not have
  uint64_t peer_moves_foreign = 0;    // a connection neither the key nor its pool owns
  uint64_t peer_moves_disabled = 0;   // this server takes no client moves (--client-moves off)
  uint64_t client_credentials_bad = 0;  // a client HELLO certificate that did not verify
  uint64_t link_keys_sent = 0;          // LINK_KEY messages (PROTOCOL.md 3.8)
};

// Its limits are ChannelLimits (channel_options.hpp), shared with the option parsing.
using ChannelServerLimits = ChannelLimits;

class ChannelServer {
 public:
  // `guard`: sign and check the segments of connections registered by clients that offer
  // the capability (nullptr: never).
  ChannelServer(Node& node, const crypto::IdentityKey& key, std::string host_id, uint16_t port,
                SegmentMacGuard* guard = nullptr, ChannelLimits limits = {});  // throws ConfigError
  ~ChannelServer();
  ChannelServer(const ChannelServer&) = delete;
  ChannelServer& operator=(const ChannelServer&) = delete;

  void shutdown();
  // What this server shows clients in its HELLO: its pool membership certificate, so
  // they know which pool's members they may follow it to (empty: in no pool).
  void set_hello_credential(std::vector<uint8_t> credential) { hello_credential_ = std::move(credential); }

  // A peer's end of connection `pcb` (id `connection_id`) moved (seed 003). `direct`: the
  // address the peer's channel comes from, which its ACM named as its new one (no NAT
  // between: point the connection there now); otherwise it will send a synthetic SYN
  // from its new address, tagged with `token`, and the migration service arms its
  // HandoverResponder. False if it cannot (the ACM is then refused).
  using PeerMovedFn = std::function<bool(tcp_pcb* pcb, uint64_t connection_id, const crypto::HandoverToken& token,
                                         const std::optional<IpAddress>& direct)>;
  void set_on_peer_moved(PeerMovedFn on_peer_moved) { on_peer_moved_ = std::move(on_peer_moved); }
  // Link rebinds (PROTOCOL.md 3.8): a fresh link key for a client's inner address, or
  // nullopt when its link does not roam that address. Asked once per established channel
  // whose client offers capability_link_rebind; the key goes to it in a LINK_KEY.
  using LinkKeyIssuer = std::function<std::optional<std::array<uint8_t, control::link_key_bytes>>(const IpAddress&)>;
  void set_link_key_issuer(LinkKeyIssuer issuer) { link_key_issuer_ = std::move(issuer); }
  // Proactive roaming (PROTOCOL.md 13.4): the ROAM_UPDATE for a client, `first` for the
  // one sent as its channel is established (it carries the pool item); an error text: none
  // now, and why (the pool has not started, or its chain ended): a new channel is told so
  // in an ERROR 3 instead of being left to wait (PROTOCOL.md 13.4).
  using RoamUpdateSource = std::function<Result<control::RoamUpdate, std::string>(bool first)>;
  void set_roam_update_source(RoamUpdateSource source) { roam_update_source_ = std::move(source); }
  // Client-held checkpoints (PROTOCOL.md 14): who answers a RESUME (unset: ERROR 1, as
  // for any message a server does not take).
  using ResumeFn = std::function<void(ChannelConnection& channel, const control::ResumeRequest& request)>;
  void set_on_resume(ResumeFn on_resume) { on_resume_ = std::move(on_resume); }
  // Sends every established channel a (periodic) ROAM_UPDATE; how many went out.
  size_t send_roam_updates();
  // How old an ACM from a client may be (and how far in the future).
  static constexpr uint64_t peer_move_max_age_ms = 30'000;
  static constexpr uint64_t peer_move_max_skew_ms = 5'000;

  // The established channel whose client registered this connection id, or nullptr.
  ChannelConnection* channel_for(uint64_t connection_id);
  // Sends one ACM (its sequence, nonce and issue time are filled in here). False when the
  // channel can no longer send.
  bool send_acm(ChannelConnection& channel, control::AddressChange acm);

  // Claims the held registration(s) of this id if its connection is known here now (an
  // import that was parked when its client registered it: call when it unparks). O(1).
  void claim_pending(uint64_t connection_id);
  // Claims every held registration whose connection is known here now (a periodic sweep
  // for whatever the per-id call missed). O(held ids).
  void claim_pending();
  // Forgets registrations of connections that ended (no pcb has their id any more): they
  // would count against the channel's cap and keep a move of all of a client's connections
  // from the global ACM form. O(registered ids). Not while a move runs: an exported
  // connection is frozen, not ended, until its ACM is sent.
  void forget_closed();
  // Every channel whose handshake completed (its client's key is authenticated): the
  // verified clients seed 004's Informer transfers.
  std::vector<ChannelConnection*> established_channels() const;
  // The connection ids this channel's client registered (and this server still maps to it).
  const std::set<uint64_t>* registered_ids(ChannelConnection* channel) const;

  // The pool `key` proved membership of in its channel HELLO, if any (a relay's resume
  // check, PROTOCOL.md 14.8.4, uses the same rule as may_move).
  std::optional<crypto::PoolPublicKey> pool_of(const OwnerKey& key) const {
    auto it = pool_of_key_.find(key);
    if (it == pool_of_key_.end()) return std::nullopt;
    return it->second;
  }
  const ChannelServerCounters& counters() const { return counters_; }
  const OwnerProofCounters& owner_proof_counters() const { return verifier_.counters(); }
  size_t channel_count() const { return channels_.size(); }

  // One channel as `roamctl show` lists it.
  struct ChannelView {
    std::optional<crypto::PublicKey> key;  // the client's static key, once established
    IpAddress address;                     // its carrier address and port, as seen here
    uint16_t port = 0;
    uint64_t opened_ms = 0;                // loop time it was accepted
    size_t connections = 0;                // registered connection ids
  };
  std::vector<ChannelView> describe() const;
  size_t half_open_count() const { return half_open_.size(); }

 private:
  struct Entry {
    std::unique_ptr<ChannelConnection> connection;
    uint64_t opened_ms = 0;
    std::set<uint64_t> ids;
    std::unordered_set<uint64_t> pending;  // registered before the connection was known here
    uint64_t refusals = 0;
  };
  enum class Claim : uint8_t { accepted, not_found, refused, over_cap };
  Claim claim(ChannelConnection& channel, Entry& entry, uint64_t id);
  bool owns(ChannelConnection& channel, tcp_pcb* pcb);
  void on_peer_moved(ChannelConnection& channel, const control::AddressChange& acm);
  // Whether the channel's client may move `pcb`: it owns it, or the owner proved
  // membership of a pool and the channel's client proves membership of the same pool (a
  // proxy's origin leg moves to another member of the proxy's pool).
  bool may_move(ChannelConnection& channel, tcp_pcb* pcb) const;
  void learn_pool(ChannelConnection& channel);
  void refused(ChannelConnection& channel, Entry& entry, size_t count);
  bool hold(ChannelConnection& channel, Entry& entry, uint64_t id);
  void unhold(ChannelConnection* channel, Entry& entry, uint64_t id);
  bool accept(tcp_pcb* pcb);
  void on_message(ChannelConnection& channel, const control::Message& message);
  void on_register(ChannelConnection& channel, const control::RegisterConnections& message);
  void forget(ChannelConnection* channel, const std::string& why);
  bool admit_half_open(const IpAddress& source);
  void release_half_open(ChannelConnection* channel);

  Node& node_;
  const crypto::IdentityKey& key_;
  std::string host_id_;
  std::vector<uint8_t> hello_credential_;
  SegmentMacGuard* guard_;
  ChannelServerLimits limits_;
  OwnerProofVerifier verifier_;
  std::unique_ptr<TcpListener> listener_;
  std::map<ChannelConnection*, Entry> channels_;
  std::unordered_map<uint64_t, ChannelConnection*> by_id_;
  // Held ids -> the channels holding them (usually one; a second client may name the same
  // id, and is refused once the connection shows whose it is).
  std::unordered_multimap<uint64_t, ChannelConnection*> pending_by_id_;
  uint64_t next_sequence_;
  // Channels accepted whose handshake has not completed, and how many per carrier address.
  std::unordered_map<ChannelConnection*, std::string> half_open_;
  std::unordered_map<std::string, size_t> half_open_by_source_;
  // Pools that client keys proved membership of in their HELLO (bounded: a key is only
  // remembered from an authenticated channel with a valid certificate).
  std::map<OwnerKey, crypto::PoolPublicKey> pool_of_key_;
  static constexpr size_t max_pool_keys = 4096;
  // The highest ACM sequence applied from each client key (an old one is stale).
  std::map<OwnerKey, uint64_t> last_peer_move_;
  PeerMovedFn on_peer_moved_;
  LinkKeyIssuer link_key_issuer_;
  RoamUpdateSource roam_update_source_;
  ResumeFn on_resume_;
  RateLimitedLog bad_frame_log_;
  RateLimitedLog limit_log_;
  RateLimitedLog peer_move_log_;
  ChannelServerCounters counters_;
};

}  // namespace roam
