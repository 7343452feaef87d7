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
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "stack/control/channel_connection.hpp"
#include "stack/control/channel_options.hpp"
#include "stack/control/owner_proof.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "crypto/identity_key.hpp"
#include "stack/control/messages.hpp"
#include "stack/node.hpp"
#include "stack/tcp_listener.hpp"
#include "base/rate_limited_log.hpp"

namespace roam {

struct ChannelServerCounters {
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
  // The connection ids this channel's client registered (and this server still maps to it).
  const std::set<uint64_t>* registered_ids(ChannelConnection* channel) const;

  const ChannelServerCounters& counters() const { return counters_; }
  const OwnerProofCounters& owner_proof_counters() const { return verifier_.counters(); }
  size_t channel_count() const { return channels_.size(); }
  size_t half_open_count() const { return half_open_.size(); }

 private:
  struct Entry {
    std::unique_ptr<ChannelConnection> connection;
    std::set<uint64_t> ids;
    std::unordered_set<uint64_t> pending;  // registered before the connection was known here
    uint64_t refusals = 0;
  };
  enum class Claim : uint8_t { accepted, not_found, refused, over_cap };
  Claim claim(ChannelConnection& channel, Entry& entry, uint64_t id);
  bool owns(ChannelConnection& channel, tcp_pcb* pcb);
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
  RateLimitedLog bad_frame_log_;
  RateLimitedLog limit_log_;
  ChannelServerCounters counters_;
};

}  // namespace roam
