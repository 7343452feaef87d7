// ChannelServer: roam-server's end of the control channels (DESIGN.md section 5). Clients
// open one to each server they use (lwIP TCP, --channel-port), authenticate with Noise XX
// and register the ids of their connections to this server; the migration service then
// tells each client where its connections went with an Address Change Message on that
// client's channel, and counts the client's ACK. Loop thread only.
//
// A registration is accepted only for a connection this server really has with the
// registering host (same carrier address), so no client can claim another's connections.
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
  uint64_t registrations_refused = 0;  // an id this server has, but with another host
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
  // The connection ids this channel's client registered (and this server still maps to it).
  const std::set<uint64_t>* registered_ids(ChannelConnection* channel) const;

  const ChannelServerCounters& counters() const { return counters_; }
  size_t channel_count() const { return channels_.size(); }
  size_t half_open_count() const { return half_open_.size(); }

 private:
  struct Entry {
    std::unique_ptr<ChannelConnection> connection;
    std::set<uint64_t> ids;
    std::unordered_set<uint64_t> pending;  // registered before the connection was known here
  };
  bool claim(ChannelConnection& channel, Entry& entry, uint64_t id);
  void hold(ChannelConnection& channel, Entry& entry, uint64_t id);
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
  SegmentMacGuard* guard_;
  std::unique_ptr<TcpListener> listener_;
  std::map<ChannelConnection*, Entry> channels_;
  std::unordered_map<uint64_t, ChannelConnection*> by_id_;
  // Held ids -> the channels holding them (usually one; a second client may name the same
  // id, and is refused once the connection shows whose it is).
  std::unordered_multimap<uint64_t, ChannelConnection*> pending_by_id_;
  uint64_t next_sequence_;
  ChannelLimits limits_;
  // Channels accepted whose handshake has not completed, and how many per carrier address.
  std::unordered_map<ChannelConnection*, std::string> half_open_;
  std::unordered_map<std::string, size_t> half_open_by_source_;
  RateLimitedLog bad_frame_log_;
  RateLimitedLog limit_log_;
  ChannelServerCounters counters_;
};

}  // namespace roam
