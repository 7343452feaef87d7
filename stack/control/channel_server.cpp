#include "stack/control/channel_server.hpp"

#include <sodium.h>

#include <chrono>
#include <utility>

#include "base/clock.hpp"
#include "base/config_error.hpp"
#include "stack/connection_id.hpp"
#include "stack/flow_key.hpp"
#include "stack/lwip_address.hpp"
#include "stack/pcb_owner.hpp"
#include "base/log.hpp"

namespace roam {

ChannelServer::ChannelServer(Node& node, const crypto::IdentityKey& key, std::string host_id, uint16_t port,
                             SegmentMacGuard* guard, ChannelLimits limits)
    : node_(node),
      key_(key),
      host_id_(std::move(host_id)),
      guard_(guard),
      limits_(limits),
      verifier_(node),
      // Sequences grow across restarts too (clients refuse any not above the last they
      // applied from this server): start from the clock, in steps finer than a millisecond.
      next_sequence_(unix_ms() << 10) {
  auto listener = TcpListener::listen(port, [this](tcp_pcb* pcb) { return accept(pcb); });
  if (!listener)
    throw ConfigError("cannot open the control channel port " + std::to_string(port) + ": " + listener.error());
  listener_ = std::move(listener.value());
  logger("channel")->info("control channel on userspace TCP port {} as '{}'", port, host_id_);
}

ChannelServer::~ChannelServer() {
  shutdown();
}

void ChannelServer::shutdown() {
  if (counters_.handshakes_timed_out + counters_.channels_refused > 0)
    logger("channel")->info("channel limits: handshakes timed out {}, channels refused {} ({} by the per-address cap)",
                            counters_.handshakes_timed_out, counters_.channels_refused,
                            counters_.channels_refused_source);
  half_open_.clear();
  half_open_by_source_.clear();
  listener_.reset();
  by_id_.clear();
  pending_by_id_.clear();
  channels_.clear();
}

bool ChannelServer::accept(tcp_pcb* pcb) {
  IpAddress source = from_lwip(pcb->remote_ip);
  if (!admit_half_open(source)) {
    tcp_abort(pcb);
    return false;
  }
  ++counters_.channels_accepted;
  auto channel = std::make_unique<control::ControlChannel>(
      crypto::NoisePattern::xx, crypto::NoiseRole::responder, key_,
      control::Hello{control::protocol_version, host_id_,
                     (guard_ != nullptr ? capability_segment_mac : 0) | capability_owner_proof |
                         (roam_update_source_ ? control::capability_roam_pool : 0),
                     hello_credential_});
  ChannelConnection::Callbacks callbacks;
  callbacks.on_established = [this](ChannelConnection& c) {
    release_half_open(&c);
    ++counters_.channels_established;
    // From now on its client's carrier SYNs name this channel (owner proofs).
    if ((c.channel().peer_hello().capabilities & capability_owner_proof) != 0)
      verifier_.add_channel(&c, c.channel().handshake_hash(), c.channel().remote_static());
    learn_pool(c);
    if ((c.channel().peer_hello().capabilities & control::capability_link_rebind) != 0 && link_key_issuer_) {
      if (auto key = link_key_issuer_(c.peer_address())) {
        if (c.send(control::LinkKeyGrant{c.peer_address(), *key})) ++counters_.link_keys_sent;
      }
    }
    if (roam_update_source_) {
      // A client that missed updates (a new channel after being away) catches up with
      // this one, or is told why there is none (PROTOCOL.md 13.4).
      if (auto update = roam_update_source_(true)) {
        if (c.send(*update)) ++counters_.roam_updates_sent;
      } else if (c.send(control::ErrorMessage{control::error_no_roam_update, update.error()})) {
        ++counters_.roam_updates_unavailable;
      }
    }
    logger("channel")->info("control channel from {} ('{}', key {}) established", c.peer_address().to_string(),
                            c.channel().peer_hello().host_id, crypto::to_base64(c.channel().remote_static()));
  };
  callbacks.on_message = [this](ChannelConnection& c, const control::Message& m) { on_message(c, m); };
  callbacks.on_bad_frame = [this](ChannelConnection& c, control::ChannelError error) {
    ++counters_.frames_dropped;
    uint64_t suppressed = 0;
    if (bad_frame_log_.allow(suppressed))
      logger("channel")->warn("control channel from {}: dropped a frame: {} ({} more not logged)",
                              c.peer_address().to_string(), control::channel_error_name(error), suppressed);
  };
  callbacks.on_closed = [this](ChannelConnection& c, const std::string& why) {
    release_half_open(&c);
    forget(&c, why);
  };
  callbacks.on_handshake_timeout = [this](ChannelConnection& c) {
    ++counters_.handshakes_timed_out;
    uint64_t suppressed = 0;
    if (limit_log_.allow(suppressed))
      logger("channel")->info("control channel from {}: no handshake within {} ms, closed ({} more not logged)",
                              c.peer_address().to_string(), limits_.handshake_timeout_ms, suppressed);
  };
  auto connection = std::make_unique<ChannelConnection>(node_, std::move(channel), std::move(callbacks));
  ChannelConnection* raw = connection.get();
  channels_[raw].connection = std::move(connection);
  channels_[raw].opened_ms = uv_now(node_.loop());
  std::string key(reinterpret_cast<const char*>(source.bytes.data()), source.size());
  ++half_open_by_source_[key];
  half_open_.emplace(raw, std::move(key));
  raw->attach(std::make_unique<TcpConnection>(pcb, raw), true);
  raw->limit_handshake(limits_.handshake_timeout_ms);
  return true;
}

// Whether one more not-yet-established channel from `source` fits the limits (counted if not).
bool ChannelServer::admit_half_open(const IpAddress& source) {
  bool overall = half_open_.size() >= limits_.max_half_open;
  auto it = half_open_by_source_.find(std::string(reinterpret_cast<const char*>(source.bytes.data()), source.size()));
  bool per_source = it != half_open_by_source_.end() && it->second >= limits_.max_half_open_per_source;
  if (!overall && !per_source) return true;
  ++counters_.channels_refused;
  if (per_source) ++counters_.channels_refused_source;
  uint64_t suppressed = 0;
  if (limit_log_.allow(suppressed))
    logger("channel")->info("control channel from {} refused: {} channels without a handshake ({} more not logged)",
                            source.to_string(), per_source ? "too many of its" : "too many", suppressed);
  return false;
}

void ChannelServer::release_half_open(ChannelConnection* channel) {
  auto it = half_open_.find(channel);
  if (it == half_open_.end()) return;
  auto source = half_open_by_source_.find(it->second);
  if (source != half_open_by_source_.end() && --source->second == 0) half_open_by_source_.erase(source);
  half_open_.erase(it);
}

void ChannelServer::forget(ChannelConnection* channel, const std::string& why) {
  auto it = channels_.find(channel);
  if (it == channels_.end()) return;
  if (!channel->channel().established()) ++counters_.channels_failed;
  logger("channel")->info("control channel from {} closed: {}", channel->peer_address().to_string(), why);
  verifier_.remove_channel(channel);
  for (uint64_t id : it->second.ids) {
    auto owner = by_id_.find(id);
    if (owner != by_id_.end() && owner->second == channel) by_id_.erase(owner);
  }
  for (uint64_t id : std::vector<uint64_t>(it->second.pending.begin(), it->second.pending.end()))
    unhold(channel, it->second, id);
  auto owned = std::move(it->second.connection);
  channels_.erase(it);
  node_.defer([dead = std::shared_ptr<ChannelConnection>(std::move(owned))] {});
}

size_t ChannelServer::send_roam_updates() {
  if (!roam_update_source_) return 0;
  auto update = roam_update_source_(false);
  if (!update) return 0;  // each channel was told why when it was set up
  // A failed send may close a channel, which leaves channels_ at once (its object lives
  // on until a deferred task): collect first, then send.
  std::vector<ChannelConnection*> established;
  for (auto& [channel, entry] : channels_)
    if (entry.connection->established()) established.push_back(entry.connection.get());
  size_t sent = 0;
  for (ChannelConnection* channel : established)
    if (channel->established() && channel->send(*update)) ++sent;
  counters_.roam_updates_sent += sent;
  return sent;
}

void ChannelServer::on_message(ChannelConnection& channel, const control::Message& message) {
  if (const auto* reg = std::get_if<control::RegisterConnections>(&message)) {
    on_register(channel, *reg);
  } else if (const auto* ack = std::get_if<control::Ack>(&message)) {
    if (ack->status == control::AckStatus::applied) {
      ++counters_.acms_applied;
    } else {
      ++counters_.acms_refused;
      logger("channel")->warn("client {} refused ACM {}", channel.peer_address().to_string(), ack->sequence);
    }
  } else if (const auto* acm = std::get_if<control::AddressChange>(&message)) {
    on_peer_moved(channel, *acm);
  } else if (const auto* resume = std::get_if<control::ResumeRequest>(&message); resume && on_resume_) {
    on_resume_(channel, *resume);
  } else if (const auto* error = std::get_if<control::ErrorMessage>(&message)) {
    ++counters_.client_errors;
    logger("channel")->warn("client {} reports error {}: {}", channel.peer_address().to_string(), error->code,
                            error->text);
  } else {
    ++counters_.unexpected_messages;  // HELLO twice
    channel.send(control::ErrorMessage{control::error_unexpected_message, "unexpected message"});
  }
}

// Whether the channel's client owns the connection (see the header). O(1).
bool ChannelServer::owns(ChannelConnection& channel, tcp_pcb* pcb) {
  const OwnerKey key = owner_key_of(channel.channel().remote_static());
  if (auto owner = pcb_owner(pcb)) {
    if (*owner == key) return true;
    ++counters_.registrations_foreign;
    return false;
  }
  if (limits_.require_owner_proof) {
    ++counters_.registrations_unproven_refused;
    return false;
  }
  if (!(from_lwip(pcb->remote_ip) == channel.peer_address())) return false;
  set_pcb_owner(pcb, key);  // the first registration binds it: no other key takes it over
  ++counters_.registrations_unproven;
  return true;
}

// A client that shows a pool certificate for its own key (a proxy's HELLO) is remembered
// as a member of that pool: connections it owns may then be moved by other members.
void ChannelServer::learn_pool(ChannelConnection& channel) {
  const auto& credential = channel.channel().peer_hello().credential;
  if (credential.empty()) return;
  auto verified = crypto::verify_certificate(credential, channel.channel().remote_static(), std::nullopt,
                                             unix_ms() / 1000);
  if (!verified) {
    ++counters_.client_credentials_bad;
    logger("channel")->warn("control channel from {}: its pool certificate does not verify ({}); ignored",
                            channel.peer_address().to_string(), crypto::certificate_error_name(verified.error()));
    return;
  }
  if (pool_of_key_.size() >= max_pool_keys) pool_of_key_.erase(pool_of_key_.begin());
  pool_of_key_[owner_key_of(channel.channel().remote_static())] = verified->pool;
}

bool ChannelServer::may_move(ChannelConnection& channel, tcp_pcb* pcb) const {
  auto owner = pcb_owner(pcb);
  if (!owner) return false;  // nobody proved it: nobody may move it
  const OwnerKey key = owner_key_of(channel.channel().remote_static());
  if (*owner == key) return true;
  auto owner_pool = pool_of_key_.find(*owner);
  auto mover_pool = pool_of_key_.find(key);
  return owner_pool != pool_of_key_.end() && mover_pool != pool_of_key_.end() &&
         owner_pool->second == mover_pool->second;
}

// An ACM from a client: its end of the named connections has a new address (seed 003).
// All or nothing: every connection must be here and the client's to move, the message
// fresh and well-formed; then each is armed for the client's synthetic SYN and the new
// owner is the mover. Anything else is refused, counted, and changes nothing.
void ChannelServer::on_peer_moved(ChannelConnection& channel, const control::AddressChange& acm) {
  if (channels_.count(&channel) == 0 || !channel.established()) return;
  ++counters_.peer_moves;
  const OwnerKey key = owner_key_of(channel.channel().remote_static());
  std::string why;
  uint64_t ChannelServerCounters::*counter = nullptr;
  uint64_t now = unix_ms();
  std::vector<tcp_pcb*> pcbs;
  if (!limits_.client_moves) {
    why = "this server takes no client moves (--client-moves off)";
    counter = &ChannelServerCounters::peer_moves_disabled;
  } else if (acm.scope != control::AcmScope::connections || acm.connection_ids.empty() || !acm.handover_token) {
    why = "names no connection or carries no handover token";
    counter = &ChannelServerCounters::peer_moves_malformed;
  } else if (acm.issued_at_ms + peer_move_max_age_ms < now || acm.issued_at_ms > now + peer_move_max_skew_ms) {
    why = "issued at a time too far from ours";
    counter = &ChannelServerCounters::peer_moves_stale;
  } else if (auto last = last_peer_move_.find(key); last != last_peer_move_.end() && acm.sequence <= last->second) {
    why = "an old sequence number";
    counter = &ChannelServerCounters::peer_moves_stale;
  } else {
    for (uint64_t id : acm.connection_ids) {
      tcp_pcb* pcb = find_pcb_by_connection_id(id);
      if (pcb == nullptr) {
        why = "connection " + std::to_string(id) + " is not here";
        counter = &ChannelServerCounters::peer_moves_unknown;
        break;
      }
      if (!may_move(channel, pcb)) {
        why = "connection " + std::to_string(id) + " is not the client's (nor its pool's)";
        counter = &ChannelServerCounters::peer_moves_foreign;
        break;
      }
      pcbs.push_back(pcb);
    }
  }
  // The ACM names as the new address the one its channel comes from: nothing between
  // rewrites it, so the connections can point there now.
  std::optional<IpAddress> direct;
  if (acm.new_address == channel.peer_address()) direct = acm.new_address;
  // Pointing a connection at the new address cannot be undone, so every 4-tuple is checked
  // free before any connection changes: all or nothing.
  if (counter == nullptr && direct) {
    for (size_t i = 0; i < pcbs.size(); ++i) {
      FlowKey moved = flow_of(pcbs[i]);
      moved.remote = *direct;
      tcp_pcb* holder = find_active_pcb(moved);
      if (holder != nullptr && holder != pcbs[i]) {
        why = "connection " + std::to_string(acm.connection_ids[i]) + " would take a 4-tuple in use here";
        counter = &ChannelServerCounters::peer_moves_refused;
        break;
      }
    }
  }
  if (counter == nullptr) {
    for (size_t i = 0; i < pcbs.size(); ++i) {
      if (!on_peer_moved_ || !on_peer_moved_(pcbs[i], acm.connection_ids[i], *acm.handover_token, direct)) {
        why = "the handover cannot be armed here";
        counter = &ChannelServerCounters::peer_moves_refused;
        break;
      }
    }
  }
  if (counter != nullptr) {
    ++counters_.peer_moves_refused;
    if (counter != &ChannelServerCounters::peer_moves_refused) ++(counters_.*counter);
    uint64_t suppressed = 0;
    if (peer_move_log_.allow(suppressed))
      logger("channel")->warn("refused an Address Change Message from client {} (key {}, sequence {}): {} ({} more "
                              "not logged)",
                              channel.peer_address().to_string(), crypto::to_base64(channel.channel().remote_static()),
                              acm.sequence, why, suppressed);
    channel.send(control::Ack{acm.sequence, control::AckStatus::refused});
    return;
  }
  last_peer_move_[key] = acm.sequence;
  for (tcp_pcb* pcb : pcbs) set_pcb_owner(pcb, key);  // the mover holds it now
  ++counters_.peer_moves_applied;
  logger("channel")->info("client {} (key {}) moved to {}: {} connection(s) {} (ACM {})",
                          channel.peer_address().to_string(), crypto::to_base64(channel.channel().remote_static()),
                          acm.new_address.to_string(), pcbs.size(),
                          direct ? "point there now" : "expect its handover", acm.sequence);
  channel.send(control::Ack{acm.sequence, direct ? control::AckStatus::rebound : control::AckStatus::applied});
}

// Maps `id` to `channel` if this server has that connection and the channel's client owns it.
ChannelServer::Claim ChannelServer::claim(ChannelConnection& channel, Entry& entry, uint64_t id) {
  tcp_pcb* pcb = find_pcb_by_connection_id(id);
  if (pcb == nullptr) return Claim::not_found;
  unhold(&channel, entry, id);
  if (!owns(channel, pcb)) return Claim::refused;
  if (entry.ids.count(id) == 0 && entry.ids.size() >= limits_.max_registered_ids) return Claim::over_cap;
  auto previous = by_id_.find(id);
  if (previous != by_id_.end() && previous->second != &channel) {
    // The same client on a newer channel (it reconnected): the registration follows it.
    auto old = channels_.find(previous->second);
    if (old != channels_.end()) old->second.ids.erase(id);
  }
  by_id_[id] = &channel;
  entry.ids.insert(id);
  ++counters_.registrations;
  if (guard_ != nullptr && (channel.channel().peer_hello().capabilities & capability_segment_mac) != 0)
    guard_->protect(pcb, id, channel.channel().handshake_hash(), crypto::SegmentDirection::server_to_client);
  return Claim::accepted;
}

void ChannelServer::refused(ChannelConnection& channel, Entry& entry, size_t count) {
  counters_.registrations_refused += count;
  entry.refusals += count;
  // One answer per frame, however many ids it named: a flood of bogus ids costs the
  // server no more frames than it sent.
  channel.send(control::ErrorMessage{control::error_not_your_connection,
                                     count == 1 ? std::string("connection is not yours")
                                                : std::to_string(count) + " connections are not yours"});
  if (entry.refusals < limits_.max_refusals) return;
  ++counters_.channels_closed_refusals;
  logger("channel")->warn("control channel from {} (key {}): {} registrations refused; closing it",
                          channel.peer_address().to_string(), crypto::to_base64(channel.channel().remote_static()),
                          entry.refusals);
  channel.close("too many refused registrations");  // on_closed (forget) runs deferred
}

void ChannelServer::on_register(ChannelConnection& channel, const control::RegisterConnections& message) {
  auto it = channels_.find(&channel);
  if (it == channels_.end() || !channel.established()) return;  // closed: the rest of its frames cost nothing
  Entry& entry = it->second;
  size_t refusals = 0;
  size_t over_cap = 0;
  for (uint64_t id : message.connection_ids) {
    switch (claim(channel, entry, id)) {
      case Claim::accepted:
        break;
      case Claim::not_found:
        if (!hold(channel, entry, id)) ++over_cap;
        break;
      case Claim::refused:
        ++refusals;
        break;
      case Claim::over_cap:
        ++over_cap;
        break;
    }
  }
  counters_.registrations_over_cap += over_cap;
  if (refusals > 0) refused(channel, entry, refusals);
}

bool ChannelServer::hold(ChannelConnection& channel, Entry& entry, uint64_t id) {
  // Bounded per channel: a client cannot make this server hold ids without end.
  if (entry.pending.count(id) != 0) return true;
  if (entry.pending.size() >= limits_.max_held_ids) return false;
  entry.pending.insert(id);
  pending_by_id_.emplace(id, &channel);
  ++counters_.registrations_pending;
  return true;
}

void ChannelServer::unhold(ChannelConnection* channel, Entry& entry, uint64_t id) {
  if (entry.pending.erase(id) == 0) return;
  auto [first, last] = pending_by_id_.equal_range(id);
  for (auto held = first; held != last; ++held) {
    if (held->second == channel) {
      pending_by_id_.erase(held);
      return;
    }
  }
}

void ChannelServer::claim_pending(uint64_t connection_id) {
  if (pending_by_id_.count(connection_id) == 0 || find_pcb_by_connection_id(connection_id) == nullptr) return;
  // claim() unholds the id; take the holders first.
  std::vector<ChannelConnection*> holders;
  auto [first, last] = pending_by_id_.equal_range(connection_id);
  for (auto held = first; held != last; ++held) holders.push_back(held->second);
  for (ChannelConnection* channel : holders) {
    auto it = channels_.find(channel);
    if (it == channels_.end()) continue;
    auto claimed = claim(*channel, it->second, connection_id);
    if (claimed == Claim::refused) refused(*channel, it->second, 1);
    if (claimed == Claim::over_cap) ++counters_.registrations_over_cap;
  }
}

void ChannelServer::claim_pending() {
  std::vector<uint64_t> ready;
  for (const auto& [id, channel] : pending_by_id_)
    if (find_pcb_by_connection_id(id) != nullptr) ready.push_back(id);
  for (uint64_t id : ready) claim_pending(id);
}

void ChannelServer::forget_closed() {
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    if (find_pcb_by_connection_id(it->first) != nullptr) {
      ++it;
      continue;
    }
    auto owner = channels_.find(it->second);
    if (owner != channels_.end()) owner->second.ids.erase(it->first);
    it = by_id_.erase(it);
  }
}

const std::set<uint64_t>* ChannelServer::registered_ids(ChannelConnection* channel) const {
  auto it = channels_.find(channel);
  return it == channels_.end() ? nullptr : &it->second.ids;
}

ChannelConnection* ChannelServer::channel_for(uint64_t connection_id) {
  auto it = by_id_.find(connection_id);
  if (it != by_id_.end()) return it->second->established() ? it->second : nullptr;
  claim_pending(connection_id);
  it = by_id_.find(connection_id);
  return it != by_id_.end() && it->second->established() ? it->second : nullptr;
}

bool ChannelServer::send_acm(ChannelConnection& channel, control::AddressChange acm) {
  acm.sequence = next_sequence_++;
  randombytes_buf(acm.nonce.data(), acm.nonce.size());
  acm.issued_at_ms = unix_ms();
  if (!channel.send(acm)) return false;
  ++counters_.acms_sent;
  return true;
}

std::vector<ChannelConnection*> ChannelServer::established_channels() const {
  std::vector<ChannelConnection*> out;
  for (const auto& [raw, entry] : channels_)
    if (raw->established()) out.push_back(raw);
  return out;
}

std::vector<ChannelServer::ChannelView> ChannelServer::describe() const {
  std::vector<ChannelView> out;
  out.reserve(channels_.size());
  for (const auto& [raw, entry] : channels_) {
    ChannelView view;
    if (raw->established()) view.key = raw->channel().remote_static();
    view.address = raw->peer_address();
    view.port = raw->peer_port();
    view.opened_ms = entry.opened_ms;
    view.connections = entry.ids.size();
    out.push_back(std::move(view));
  }
  return out;
}

}  // namespace roam
