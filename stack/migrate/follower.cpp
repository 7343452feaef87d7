#include "stack/migrate/follower.hpp"

#include <fmt/format.h>

#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "base/clock.hpp"
#include "base/config_error.hpp"
#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/lwip_address.hpp"
#include "stack/control/owner_proof.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "base/log.hpp"
#include "crypto/handover_mac.hpp"

namespace roam {

namespace {
constexpr uint64_t housekeeping_ms = 500;
constexpr uint64_t retry_after_failure_ms = 1000;
constexpr uint64_t retry_after_distrust_ms = 30'000;

}  // namespace

struct Follower::Server {
  IpAddress address;
  std::unique_ptr<ChannelConnection> channel;
  bool trusted = false;           // the channel is established and the key accepted
  std::set<uint64_t> registered;  // ids registered on the current channel
  // Ids tracked since the last registration: registered without walking every pcb (a
  // client opening 10,000 carriers must not walk 10,000 pcbs for each).
  std::vector<uint64_t> to_register;
  bool register_all = true;  // after (re)establishing: walk the pcbs once
  uint64_t retry_at_ms = 0;  // loop time before which no new channel is opened
  // The pool this server showed a valid membership certificate of (none: in no pool; it
  // cannot move our connections anywhere).
  std::optional<crypto::PoolPublicKey> pool;
  // Set when an ACM sent our connections here: the key the ACM's certificate named. A
  // server at this address with another key is refused.
  std::optional<crypto::PublicKey> expected_key;
  // The owner proof of the current trusted channel, for the carriers opened from now on.
  std::shared_ptr<const OwnerProofSigner> signer;
  // Carriers waiting for the channel to settle, with the loop time they stop waiting.
  std::vector<std::pair<uint64_t, std::function<void()>>> waiters;
  // Our moves this server must be told of (seed 003): unsent until the channel is
  // trusted, then awaiting the ACK of their sequence.
  struct Announcement {
    control::AddressChange acm;
    std::vector<FlowKey> flows;  // as they are here now (new local address)
    bool sent = false;
    uint64_t give_up_at_ms = 0;
  };
  std::vector<Announcement> announcements;
};

Follower::Follower(Node& node, const ChannelOptions& options, Events events)
    : node_(node),
      options_(options),
      events_(std::move(events)),
      key_(load_identity(options)),
      handover_(node, [this](const FlowKey& flow, bool answered) { on_handover_done(flow, answered); }),
      guard_(node),
      tracker_(
          [this](const migrate::ChangeoverReport& r) {
            logger("migrate")->info(
                "changeover to {}: {} connection(s) heard from on the new path in {:.3f} ms after the ACM", r.target,
                r.heard, r.elapsed_ms);
            if (events_.on_moved) events_.on_moved(r);
          },
          [](const migrate::ChangeoverReport& r) {
            logger("migrate")->info("handover to {}: {} of {} connection(s) answered in {:.3f} ms", r.target,
                                    r.answered, r.handovers, r.elapsed_ms);
          }),
      hold_(node) {
  next_sequence_ = unix_ms() << 10;
  if (options_.segment_mac) segment_mac_ = std::make_unique<SegmentMacGuard>(node_);
  if (!options_.known_hosts_file.empty()) {
    auto loaded = crypto::KnownHosts::load(options_.known_hosts_file);
    if (!loaded)
      throw ConfigError(fmt::format("bad --known-hosts '{}': line {}: {}", options_.known_hosts_file,
                                    loaded.error().line, loaded.error().reason));
    known_hosts_ = std::move(loaded.value());
    size_t pruned = known_hosts_.prune(unix_ms() / 1000, options_.known_hosts_max_idle_s);
    if (pruned > 0) logger("channel")->info("known hosts: pruned {} entries unused for long", pruned);
  } else if (options_.pinned) {
    throw ConfigError("--pin-keys needs --known-hosts FILE (the keys to pin)");
  }
  if (uv_timer_init(node_.loop(), timer_.get()) == 0) timer_.mark_initialized();
  timer_.get()->data = this;
  start_repeating_timer<&Follower::on_housekeeping>(housekeeping_timer_, node_.loop(), this, housekeeping_ms,
                                                        false);
}

Follower::~Follower() {
  close();
}

void Follower::close() {
  if (closed_) return;
  closed_ = true;
  handover_.close();
  if (timer_.valid()) timer_.close();
  if (housekeeping_timer_.valid()) housekeeping_timer_.close();
  // Closing queues each channel's on_closed; destroying the channel right away cancels it,
  // so nothing calls back into this follower after it is gone.
  for (auto& [name, server] : servers_) {
    if (!server->channel) continue;
    server->channel->close("client shutting down");
    server->channel.reset();
  }
  servers_.clear();
  logger("channel")->info("{}", counters_text());
  const auto& h = handover_.counters();
  logger("channel")->info(
      "handover: started {} syns sent {} (retries {}), synacks accepted {} stray {} forged {}, window acks {}, "
      "output held {}, failed {}",
      h.handovers_started, h.syns_sent, h.syn_retries, h.synacks_accepted, h.synacks_stray, h.synacks_forged,
      h.window_acks_consumed, h.output_held, h.handovers_failed);
  if (segment_mac_) logger("channel")->info("{}", segment_mac_->counters_text());
}

std::string Follower::counters_text() const {
  const auto& c = counters_;
  return fmt::format(
      "follower: channels opened {} established {} failed {} untrusted {}; frames forged {} replayed {} "
      "dropped {}; ACMs {} applied {} "
      "refused {} (replayed {} stale {} wrong peer {} unknown connections {} bad address {} untrusted target {}); "
      "connections moved {}; pokes {} unanswered {}; carriers held for the channel {} (opened unproven after the "
      "wait {}); own address changes {}, our moves announced {} (applied {} rebound {} refused {} (connections reset {}) abandoned {}), "
      "packets held until told {}; transfers {} (connects redirected {})",
      c.channels_opened, c.channels_established, c.channels_failed, c.servers_untrusted, c.frames_forged,
      c.frames_replayed, c.frames_dropped, c.acms, c.acms_applied, c.acms_refused, c.acms_replayed, c.acms_stale,
      c.acms_wrong_peer, c.acms_unknown_connections, c.acms_bad_address, c.acms_untrusted_target,
      c.connections_moved, tracker_.counters().pokes, tracker_.counters().unanswered, c.carriers_waited,
      c.carriers_wait_expired, c.own_address_changes, c.moves_announced, c.moves_applied, c.moves_rebound,
      c.moves_refused, c.moves_refused_reset, c.moves_abandoned, hold_.counters().packets_held, c.transfers_applied,
      c.connects_redirected);
}

Follower::Server& Follower::server_for(const IpAddress& address) {
  auto& slot = servers_[address.to_string()];
  if (!slot) {
    slot = std::make_unique<Server>();
    slot->address = address;
  }
  return *slot;
}

std::vector<control::ClientConnection> Follower::connections_with(const IpAddress& server) const {
  std::vector<control::ClientConnection> out;
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next) {
    uint64_t id = connection_id(pcb);
    // The control channels themselves are never moved by a message they carry.
    if (id == 0 || pcb->remote_port == options_.port) continue;
    auto remote = from_lwip(pcb->remote_ip);
    if (!(remote == server)) continue;
    out.push_back({id, remote, pcb->remote_port});
  }
  return out;
}

void Follower::track(tcp_pcb* pcb) {
  if (closed_ || pcb == nullptr || connection_id(pcb) == 0) return;
  // After the current input: lwIP sends this connection's last handshake ACK once the
  // connected callback returns, and the registration should not overtake it.
  IpAddress address = from_lwip(pcb->remote_ip);
  uint64_t id = connection_id(pcb);
  node_.defer([this, address, id, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired() || closed_) return;
    Server& server = server_for(address);
    server.to_register.push_back(id);
    if (server.trusted) {
      register_connections(server);
    } else if (!server.channel) {
      open_channel(server);
    }
  });
}

bool Follower::send_to(const IpAddress& address, const control::Message& message) {
  auto it = servers_.find(address.to_string());
  if (closed_ || it == servers_.end() || !it->second->trusted || !it->second->channel) return false;
  return it->second->channel->send(message);
}

void Follower::resumed_at(tcp_pcb* pcb, const IpAddress& address, const std::optional<crypto::HandoverToken>& token) {
  if (closed_ || pcb == nullptr) return;
  // It left that server: should it come back (a restarted member), it must be registered
  // there again, as after an ACM.
  if (auto old = servers_.find(from_lwip(pcb->remote_ip).to_string()); old != servers_.end())
    old->second->registered.erase(connection_id(pcb));
  // The same path as an ACM's connections (rewrite, silence the old flow, handover or
  // restart, follow the changeover), for this one connection and the same port.
  follow({pcb}, address, 0, options_.handover ? token : std::nullopt);
  track(pcb);
}

void Follower::prepare(const IpAddress& server) {
  if (closed_) return;
  open_channel(server_for(server));
}

void Follower::when_ready(const IpAddress& address, std::function<void()> then) {
  if (closed_) return;
  Server& server = server_for(address);
  if (!server.trusted) open_channel(server);
  if (server.trusted || !server.channel) {  // settled, or no channel can be opened now
    then();
    return;
  }
  ++counters_.carriers_waited;
  server.waiters.emplace_back(uv_now(node_.loop()) + channel_wait_ms, std::move(then));
}

std::shared_ptr<const SynOptionSource> Follower::syn_option_for(const IpAddress& address) {
  auto it = servers_.find(address.to_string());
  if (it == servers_.end() || !it->second->trusted) return nullptr;
  return it->second->signer;
}

uint32_t Follower::peer_capabilities(const IpAddress& address) const {
  auto it = servers_.find(address.to_string());
  if (it == servers_.end() || !it->second->trusted || !it->second->channel) return 0;
  return it->second->channel->channel().peer_hello().capabilities;
}

// Runs the waiting carriers' continuations after the current callback (they open
// connections): all of them, or those whose wait expired.
void Follower::release_waiters(Server& server, bool all) {
  if (server.waiters.empty()) return;
  std::vector<std::function<void()>> ready;
  uint64_t now = uv_now(node_.loop());
  std::erase_if(server.waiters, [&](auto& waiter) {
    if (!all && now < waiter.first) return false;
    if (!all) ++counters_.carriers_wait_expired;
    ready.push_back(std::move(waiter.second));
    return true;
  });
  node_.defer([ready = std::move(ready), alive = std::weak_ptr<bool>(alive_), this] {
    if (alive.expired() || closed_) return;
    for (const auto& then : ready) then();
  });
}

void Follower::open_channel(Server& server) {
  if (closed_ || server.channel || uv_now(node_.loop()) < server.retry_at_ms) return;
  std::string host_id = options_.host_id.empty() ? "client" : options_.host_id;
  auto channel = std::make_unique<control::ControlChannel>(
      crypto::NoisePattern::xx, crypto::NoiseRole::initiator, *key_,
      control::Hello{control::protocol_version, host_id,
                     (segment_mac_ ? capability_segment_mac : 0) | capability_owner_proof |
                         (options_.link_rebind ? control::capability_link_rebind : 0),
                     options_.hello_credential});
  ChannelConnection::Callbacks callbacks;
  Server* target = &server;
  callbacks.on_established = [this, target](ChannelConnection& c) { on_established(*target, c); };
  callbacks.on_message = [this, target](ChannelConnection& c, const control::Message& m) { on_message(*target, c, m); };
  callbacks.on_bad_frame = [this](ChannelConnection& c, control::ChannelError error) {
    if (error == control::ChannelError::forged) {
      ++counters_.frames_forged;
    } else if (error == control::ChannelError::replayed) {
      ++counters_.frames_replayed;
    } else {
      ++counters_.frames_dropped;
    }
    uint64_t suppressed = 0;
    if (bad_frame_log_.allow(suppressed))
      logger("channel")->warn("control channel to {}: dropped a frame: {} ({} more not logged)",
                              c.peer_address().to_string(), control::channel_error_name(error), suppressed);
  };
  callbacks.on_closed = [this, target](ChannelConnection&, const std::string& why) { on_closed(*target, why); };
  auto connection = std::make_unique<ChannelConnection>(node_, std::move(channel), std::move(callbacks));
  auto tcp = TcpConnection::connect(server.address, options_.port, connection.get());
  if (!tcp) {
    logger("channel")->warn("cannot open a control channel to {}: {}", server.address.to_string(), tcp.error());
    server.retry_at_ms = uv_now(node_.loop()) + retry_after_failure_ms;
    return;
  }
  ++counters_.channels_opened;
  connection->attach(std::move(tcp.value()), false);
  server.channel = std::move(connection);
  server.trusted = false;
  server.registered.clear();
  server.register_all = true;
  node_.kick();
}

// The server's pool: its HELLO's certificate must certify the key it authenticated with,
// under a pool this client trusts (--trust-pool; any, when none is given). An error text
// when it does not; nullopt pool when it shows none.
Result<std::optional<crypto::PoolPublicKey>, std::string> Follower::pool_of(const control::Hello& hello,
                                                                           const crypto::PublicKey& key) const {
  if (hello.credential.empty()) {
    if (!options_.trusted_pools.empty()) return unexpected(std::string("shows no pool certificate (--trust-pool)"));
    return std::optional<crypto::PoolPublicKey>{};
  }
  auto verified = crypto::verify_certificate(hello.credential, key, std::nullopt, unix_ms() / 1000);
  if (!verified) return unexpected(std::string(crypto::certificate_error_name(verified.error())));
  if (!options_.trusted_pools.empty() &&
      std::find(options_.trusted_pools.begin(), options_.trusted_pools.end(), verified->pool) ==
          options_.trusted_pools.end())
    return unexpected("member of pool " + crypto::to_base64(verified->pool) + ", not one --trust-pool names");
  return std::optional<crypto::PoolPublicKey>{verified->pool};
}

void Follower::on_established(Server& server, ChannelConnection& channel) {
  ++counters_.channels_established;
  const auto& hello = channel.channel().peer_hello();
  const auto& key = channel.channel().remote_static();
  auto pool = pool_of(hello, key);
  std::string distrust;
  if (!pool)
    distrust = pool.error();
  else if (server.expected_key && *server.expected_key != key)
    distrust = "not the key the Address Change Message that sent us here certified (" +
               crypto::to_base64(*server.expected_key) + ")";
  if (!distrust.empty()) {
    ++counters_.servers_untrusted;
    logger("channel")->error("server {} ('{}') with key {}: {}; refused", server.address.to_string(), hello.host_id,
                             crypto::to_base64(key), distrust);
    server.retry_at_ms = uv_now(node_.loop()) + retry_after_distrust_ms;
    channel.close("untrusted server");
    return;
  }
  server.pool = *pool;
  auto verdict =
      known_hosts_.check(hello.host_id, key, unix_ms() / 1000,
                         options_.pinned ? crypto::TrustPolicy::pinned : crypto::TrustPolicy::trust_on_first_use);
  if (!crypto::trusted(verdict)) {
    ++counters_.servers_untrusted;
    logger("channel")->error("server {} ('{}') presented key {}: {}; its Address Change Messages will be ignored",
                             server.address.to_string(), hello.host_id, crypto::to_base64(key),
                             crypto::trust_verdict_name(verdict));
    server.retry_at_ms = uv_now(node_.loop()) + retry_after_distrust_ms;
    channel.close("untrusted server key");
    release_waiters(server, true);
    return;
  }
  if (verdict == crypto::TrustVerdict::learned) {
    logger("channel")->info("server {} ('{}'): key {} learned (trust on first use)", server.address.to_string(),
                            hello.host_id, crypto::to_base64(key));
  }
  save_known_hosts();
  server.trusted = true;
  if ((hello.capabilities & capability_owner_proof) != 0)
    server.signer = std::make_shared<const OwnerProofSigner>(channel.channel().handshake_hash());
  logger("channel")->info("control channel to {} ('{}') established from local port {}", server.address.to_string(),
                          hello.host_id, channel.local_port());
  register_connections(server);
  send_announcements(server);
  release_waiters(server, true);
}

void Follower::save_known_hosts() {
  if (options_.known_hosts_file.empty()) return;
  auto saved = known_hosts_.save(options_.known_hosts_file);
  if (!saved) logger("channel")->warn("cannot save {}: {}", options_.known_hosts_file, saved.error());
}

void Follower::register_connections(Server& server) {
  if (!server.trusted || !server.channel) return;
  std::vector<uint64_t> candidates;
  if (server.register_all) {
    for (const auto& c : connections_with(server.address)) candidates.push_back(c.id);
    server.register_all = false;
  } else {
    candidates.swap(server.to_register);
  }
  server.to_register.clear();
  control::RegisterConnections message;
  bool sign = segment_mac_ && (server.channel->channel().peer_hello().capabilities & capability_segment_mac) != 0;
  for (uint64_t id : candidates) {
    tcp_pcb* pcb = find_pcb_by_connection_id(id);
    // Gone already, or since moved to another server: not this channel's to name.
    if (pcb == nullptr || !(from_lwip(pcb->remote_ip) == server.address)) continue;
    if (!server.registered.insert(id).second) continue;
    message.connection_ids.push_back(id);
    if (sign)
      segment_mac_->protect(pcb, id, server.channel->channel().handshake_hash(),
                            crypto::SegmentDirection::client_to_server);
  }
  size_t offset = 0;
  while (offset < message.connection_ids.size()) {
    control::RegisterConnections part;
    size_t n = std::min(message.connection_ids.size() - offset, control::max_connection_ids);
    part.connection_ids.assign(message.connection_ids.begin() + static_cast<long>(offset),
                               message.connection_ids.begin() + static_cast<long>(offset + n));
    offset += n;
    if (!server.channel->send(part)) return;
    counters_.registrations_sent += n;
  }
}

void Follower::on_closed(Server& server, const std::string& why) {
  if (!server.channel) return;
  if (!server.trusted) ++counters_.channels_failed;
  logger("channel")->info("control channel to {} closed: {}", server.address.to_string(), why);
  ChannelConnection* dying = server.channel.release();
  node_.defer([dying] { delete dying; });
  server.trusted = false;
  server.signer.reset();
  release_waiters(server, true);
  server.registered.clear();
  server.register_all = true;
  for (auto& announcement : server.announcements) announcement.sent = false;  // again, on the next channel
  server.retry_at_ms = std::max(server.retry_at_ms, uv_now(node_.loop()) + retry_after_failure_ms);
}

void Follower::on_housekeeping() {
  if (segment_mac_) segment_mac_->prune();
  for (auto it = servers_.begin(); it != servers_.end();) {
    Server& server = *it->second;
    bool has_connections = !connections_with(server.address).empty();
    release_waiters(server, false);  // those that waited channel_wait_ms
    expire_announcements(server, uv_now(node_.loop()));
    if (!server.channel && !has_connections && server.waiters.empty() && server.announcements.empty()) {
      it = servers_.erase(it);
      continue;
    }
    if (!server.channel)
      open_channel(server);
    else
      register_connections(server);  // connections that came up while the channel was opening
    ++it;
  }
}

void Follower::on_message(Server& server, ChannelConnection& channel, const control::Message& message) {
  if (!server.trusted) return;
  if (const auto* acm = std::get_if<control::AddressChange>(&message)) {
    on_acm(channel, *acm);
  } else if (const auto* ack = std::get_if<control::Ack>(&message)) {
    on_announcement_ack(server, *ack);
  } else if (const auto* error = std::get_if<control::ErrorMessage>(&message)) {
    logger("channel")->warn("server {} reports error {}: {}", server.address.to_string(), error->code, error->text);
    if (events_.on_error) events_.on_error(server.address, *error);
  } else if (const auto* grant = std::get_if<control::LinkKeyGrant>(&message)) {
    if (events_.on_link_key && options_.link_rebind) events_.on_link_key(server.address, *grant);
  } else if (const auto* update = std::get_if<control::RoamUpdate>(&message)) {
    if (events_.on_roam_update) events_.on_roam_update(server.address, *update);
  } else if (const auto* push = std::get_if<control::CheckpointPush>(&message)) {
    if (events_.on_checkpoint) events_.on_checkpoint(server.address, *push);
  } else if (const auto* answer = std::get_if<control::ResumeAnswer>(&message)) {
    if (events_.on_resume_answer) events_.on_resume_answer(server.address, *answer);
  }
}

Result<Ok, std::string> Follower::change_own_address(const IpAddress& old_local, const IpAddress& new_local) {
  if (old_local == new_local) return Ok{};
  bool ours = false;
  for (size_t i = 0; i < node_.interface_count(); ++i)
    if (auto address = node_.interface_address(i, old_local.version); address && *address == old_local) ours = true;
  // Not ours (the node refuses it), or no follower any more: only the node changes.
  if (closed_ || !ours || old_local.version != new_local.version) return node_.change_address(old_local, new_local);
  // Our carriers on the old address (the control channels are not carried over: below).
  ip_addr_t old_ip = to_lwip(old_local);
  std::vector<tcp_pcb*> carriers;
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next)
    if (ip_addr_cmp(&pcb->local_ip, &old_ip) && pcb->remote_port != options_.port) carriers.push_back(pcb);
  auto old_flows = migrate::rewrite_local(std::span<tcp_pcb* const>(carriers), new_local);
  std::vector<MovedEnd> ends;
  for (size_t i = 0; i < carriers.size(); ++i) {
    tcp_pcb* pcb = carriers[i];
    FlowKey moved = flow_of(pcb);
    if (segment_mac_) segment_mac_->rebind(old_flows[i], moved);  // the key stays with the connection
    uint64_t id = connection_id(pcb);
    if (id == 0) continue;  // still opening: its SYN goes on from the new address
    hold_.hold(moved);
    ends.push_back({pcb, id, old_local});
  }
  // The channels: their server knows them by our old address, and an ACM must come on a
  // channel from the new one. Closing resets them from the old address (lwIP aborts what
  // is still bound to it when the address changes) and cancels their on_closed; new ones
  // open at once, with no retry delay.
  for (auto& [name, server] : servers_) {
    if (server->address.version != old_local.version) continue;
    if (server->channel) {
      server->channel->close("our address changed");
      server->channel.reset();
    }
    server->trusted = false;
    server->signer.reset();
    server->registered.clear();
    server->register_all = true;
    // An earlier move not yet answered is superseded: the announcement below names the
    // same connections from where they are now (an ACK of the old one finds nothing).
    for (auto& announcement : server->announcements) release_held(announcement.flows);
    server->announcements.clear();
    server->retry_at_ms = 0;
  }
  std::erase_if(to_announce_, [&](const EndToAnnounce& end) {  // not flushed yet: superseded too
    if (!(end.flow.local == old_local)) return false;
    hold_.release(end.flow);
    return true;
  });
  auto changed = node_.change_address(old_local, new_local);
  if (!changed) {  // cannot happen (checked above); the connections stay on the new address
    for (const auto& end : ends) hold_.release(flow_of(end.pcb));
    return changed;
  }
  ++counters_.own_address_changes;
  logger("migrate")->info("our address changed from {} to {}: {} connection(s) move with it",
                          old_local.to_string(), new_local.to_string(), ends.size());
  announce_moved(ends);
  // Servers we had a channel to but no moved connection with: a channel from here again.
  for (auto& [name, server] : servers_)
    if (!server->channel && server->address.version == new_local.version) open_channel(*server);
  return Ok{};
}

void Follower::announce_moved(const std::vector<MovedEnd>& ends) {
  if (closed_) return;
  bool scheduled = !to_announce_.empty();
  for (const auto& end : ends)
    if (end.pcb != nullptr && end.connection_id != 0)
      to_announce_.push_back({flow_of(end.pcb), end.connection_id, end.old_local});
  if (scheduled || to_announce_.empty()) return;
  node_.defer([this, alive = std::weak_ptr<bool>(alive_)] {
    if (!alive.expired()) flush_announcements();
  });
}

void Follower::flush_announcements() {
  std::vector<EndToAnnounce> ends;
  ends.swap(to_announce_);
  if (closed_ || ends.empty()) return;
  uint64_t now_ms = uv_now(node_.loop());
  // One ACM per peer and address change (at most max_connection_ids ids each).
  std::map<std::string, std::vector<const EndToAnnounce*>> by_peer;
  for (const auto& end : ends)
    by_peer[end.flow.remote.to_string() + " " + end.old_local.to_string() + " " + end.flow.local.to_string()]
        .push_back(&end);
  for (auto& [name, group] : by_peer) {
    const EndToAnnounce& first = *group.front();
    Server& server = server_for(first.flow.remote);
    for (size_t offset = 0; offset < group.size(); offset += control::max_connection_ids) {
      Server::Announcement announcement;
      auto& acm = announcement.acm;
      acm.scope = control::AcmScope::connections;
      acm.old_address = first.old_local;
      acm.new_address = first.flow.local;
      acm.handover_token = crypto::random_handover_token();
      acm.target_credential = options_.hello_credential;
      for (size_t i = offset; i < std::min(group.size(), offset + control::max_connection_ids); ++i) {
        acm.connection_ids.push_back(group[i]->connection_id);
        announcement.flows.push_back(group[i]->flow);
      }
      announcement.give_up_at_ms = now_ms + announce_timeout_ms;
      server.announcements.push_back(std::move(announcement));
    }
    logger("migrate")->info("our end of {} connection(s) with {} moved from {} to {}: telling it", group.size(),
                            server.address.to_string(), first.old_local.to_string(), first.flow.local.to_string());
    if (server.trusted && server.channel)
      send_announcements(server);
    else
      open_channel(server);
  }
}

void Follower::send_announcements(Server& server) {
  if (!server.trusted || !server.channel) return;
  for (auto& announcement : server.announcements) {
    if (announcement.sent) continue;
    announcement.acm.sequence = next_sequence_++;
    randombytes_buf(announcement.acm.nonce.data(), announcement.acm.nonce.size());
    announcement.acm.issued_at_ms = unix_ms();
    if (!server.channel->send(announcement.acm)) return;
    announcement.sent = true;
    ++counters_.moves_announced;
  }
}

void Follower::on_announcement_ack(Server& server, const control::Ack& ack) {
  auto it = std::find_if(server.announcements.begin(), server.announcements.end(), [&](const auto& a) {
    return a.sent && a.acm.sequence == ack.sequence;
  });
  if (it == server.announcements.end()) return;  // not ours, or answered already
  Server::Announcement announcement = std::move(*it);
  server.announcements.erase(it);
  const auto& ids = announcement.acm.connection_ids;
  // Held since our address changed: from here the handover holds them (applied), or they
  // may send at once (rebound), or they are lost anyway (refused).
  release_held(announcement.flows);
  if (ack.status == control::AckStatus::refused) {
    ++counters_.moves_refused;
    // The server keeps sending to our old address, which we no longer have: these
    // connections are dead. Reset them now, so their applications learn it at once
    // instead of after the dead-peer bound.
    size_t reset = 0;
    for (size_t i = 0; i < ids.size(); ++i)
      if (tcp_pcb* pcb = migrate::find_connection_pcb(announcement.flows[i], ids[i])) {
        tcp_abort(pcb);  // the owner's error callback sees ERR_ABRT and lets go of it
        ++reset;
      }
    counters_.moves_refused_reset += reset;
    logger("migrate")->warn("{} refused our move to {} ({} connection(s)); reset {} of them (see that server's log "
                            "for why)",
                            server.address.to_string(), announcement.acm.new_address.to_string(), ids.size(), reset);
    return;
  }
  uint64_t now = uv_hrtime();
  uint64_t now_ms = uv_now(node_.loop());
  logger("migrate")->info("{} {} our move to {} ({} connection(s), ACM {})", server.address.to_string(),
                          ack.status == control::AckStatus::rebound ? "points at us directly after"
                                                                    : "expects our handover for",
                          announcement.acm.new_address.to_string(), ids.size(), ack.sequence);
  if (ack.status == control::AckStatus::rebound) {
    ++counters_.moves_rebound;
    // The peer retransmits to us now; a live connection does too (a parked import waits
    // for the peer's first packet, and is not in lwIP to find).
    for (size_t i = 0; i < ids.size(); ++i)
      if (tcp_pcb* pcb = migrate::find_connection_pcb(announcement.flows[i], ids[i]))
        migrate::restart_transmission(pcb);
    node_.kick();
    return;
  }
  ++counters_.moves_applied;
  // The peer waits for our synthetic SYNs, through whatever NAT is in front of us now.
  std::vector<std::pair<tcp_pcb*, uint64_t>> live;
  for (size_t i = 0; i < ids.size(); ++i)
    if (tcp_pcb* pcb = migrate::find_connection_pcb(announcement.flows[i], ids[i])) live.emplace_back(pcb, ids[i]);
  if (live.empty()) return;
  uint64_t batch =
      tracker_.open_batch(endpoint_string(server.address, live.front().first->remote_port), live.size(), now);
  for (auto [pcb, id] : live) {
    FlowKey flow = flow_of(pcb);
    moving_ids_[flow] = id;
    if (options_.handover && handover_.start(pcb, id, *announcement.acm.handover_token, now_ms)) {
      tracker_.handover_started(batch, flow);
      continue;
    }
    ++counters_.handovers_unstarted;
    migrate::restart_transmission(pcb);
    await_new_path(flow, batch);
  }
  run_machines();
  node_.kick();
}

void Follower::release_held(const std::vector<FlowKey>& flows) {
  for (const auto& flow : flows) hold_.release(flow);
}

void Follower::expire_announcements(Server& server, uint64_t now_ms) {
  std::erase_if(server.announcements, [&](const Server::Announcement& a) {
    if (now_ms < a.give_up_at_ms) return false;
    ++counters_.moves_abandoned;
    release_held(a.flows);  // left to their direct path: nothing better is coming
    logger("migrate")->warn("{} never answered our move to {} ({} connection(s)); given up",
                            server.address.to_string(), a.acm.new_address.to_string(), a.acm.connection_ids.size());
    return true;
  });
}

void Follower::count_refusal(control::AcmVerdict verdict) {
  ++counters_.acms_refused;
  switch (verdict) {
    case control::AcmVerdict::replayed:
      ++counters_.acms_replayed;
      break;
    case control::AcmVerdict::stale:
    case control::AcmVerdict::from_future:
      ++counters_.acms_stale;
      break;
    case control::AcmVerdict::wrong_peer:
      ++counters_.acms_wrong_peer;
      break;
    case control::AcmVerdict::unknown_connections:
      ++counters_.acms_unknown_connections;
      break;
    case control::AcmVerdict::bad_address:
      ++counters_.acms_bad_address;
      break;
    case control::AcmVerdict::untrusted_target:
      ++counters_.acms_untrusted_target;
      break;
    case control::AcmVerdict::apply:
      break;
  }
}

control::AcmVerdict Follower::apply_acm(const IpAddress& server, const crypto::PublicKey& server_key,
                                        const std::optional<crypto::PoolPublicKey>& server_pool,
                                        const control::AddressChange& acm, uint64_t now_unix_ms) {
  ++counters_.acms;
  // The target must be a member of the pool the sending server proved it belongs to: a
  // server (or whoever drives it) cannot send us to a host outside its pool.
  auto target = server_pool ? crypto::verify_member_of(acm.target_credential, *server_pool, now_unix_ms / 1000)
                            : Result<crypto::PoolCertificate, crypto::CertificateError>(
                                  unexpected(crypto::CertificateError::wrong_pool));
  if (!target) {
    count_refusal(control::AcmVerdict::untrusted_target);
    uint64_t suppressed = 0;
    if (refusal_log_.allow(suppressed))
      logger("channel")->warn(
          "refused an Address Change Message from {} (sequence {}) toward {}: {} ({} more not logged)",
          server.to_string(), acm.sequence, acm.new_address.to_string(),
          !server_pool ? "the sending server is in no pool"
          : acm.target_credential.empty() ? "it names no pool member"
                                          : crypto::certificate_error_name(target.error()),
          suppressed);
    return control::AcmVerdict::untrusted_target;
  }
  auto& filter =
      filters_.try_emplace({server_key, server.to_string()}, control::AcmLimits{options_.acm_max_age_ms, 5'000})
          .first->second;
  auto ours = connections_with(server);
  auto decision = filter.check(acm, server, ours, now_unix_ms);
  if (decision.verdict != control::AcmVerdict::apply) {
    count_refusal(decision.verdict);
    uint64_t suppressed = 0;
    if (refusal_log_.allow(suppressed))
      logger("channel")->warn("refused an Address Change Message from {} (sequence {}): {} ({} more not logged)",
                              server.to_string(), acm.sequence, control::acm_verdict_name(decision.verdict),
                              suppressed);
    return decision.verdict;
  }
  if (acm.scope == control::AcmScope::transfer) {
    filter.remember(acm, now_unix_ms);
    ++counters_.acms_applied;
    ++counters_.transfers_applied;
    const uint16_t to_port = acm.new_port != 0 ? acm.new_port : acm.old_port;
    server_for(acm.new_address).expected_key = target->member;
    size_t redirected = redirect_opening(acm.old_address, acm.old_port, acm.new_address, acm.new_port);
    counters_.connects_redirected += redirected;
    auto where = [](const IpAddress& address, uint16_t port) {
      return port == 0 ? address.to_string() : endpoint_string(address, port);  // 0: every port
    };
    logger("migrate")->info("server {} transfers its clients to {} (transfer notification {}): new connections go "
                            "there, {} still opening redirected",
                            where(acm.old_address, acm.old_port), where(acm.new_address, to_port), acm.sequence,
                            redirected);
    if (events_.on_server_moved) events_.on_server_moved(ServerMove{acm.old_address, acm.old_port, acm.new_address, to_port});
    return decision.verdict;
  }
  std::vector<tcp_pcb*> pcbs;
  for (uint64_t id : decision.connections)
    if (tcp_pcb* pcb = find_pcb_by_connection_id(id)) pcbs.push_back(pcb);
  filter.remember(acm, now_unix_ms);
  ++counters_.acms_applied;
  // They left that server: should they come back, they must be registered there again
  // (the server forgets the registrations of connections that left it).
  if (auto old = servers_.find(server.to_string()); old != servers_.end())
    for (uint64_t id : decision.connections) old->second->registered.erase(id);
  counters_.unknown_ids += decision.unknown_ids;
  uint16_t new_port = acm.new_port != 0 ? acm.new_port : acm.old_port;
  server_for(acm.new_address).expected_key = target->member;
  follow(pcbs, acm.new_address, acm.new_port, options_.handover ? acm.handover_token : std::nullopt);
  logger("migrate")->info("server {} moved to {}: {} connection(s) follow (ACM {})",
                          endpoint_string(acm.old_address, acm.old_port), endpoint_string(acm.new_address, new_port),
                          pcbs.size(), acm.sequence);
  // The check's connections are ours at the ACM's old endpoint that it takes: when that is
  // all we had there, the endpoint itself moved.
  size_t at_old_endpoint = static_cast<size_t>(std::count_if(ours.begin(), ours.end(), [&acm](const auto& c) {
    return c.remote == acm.old_address && (acm.old_port == 0 || c.remote_port == acm.old_port);
  }));
  if (events_.on_server_moved && decision.connections.size() == at_old_endpoint)
    events_.on_server_moved(ServerMove{acm.old_address, acm.old_port, acm.new_address, new_port});
  return decision.verdict;
}

void Follower::on_acm(ChannelConnection& channel, const control::AddressChange& acm) {
  auto found = servers_.find(channel.peer_address().to_string());
  std::optional<crypto::PoolPublicKey> pool;
  if (found != servers_.end()) pool = found->second->pool;
  auto verdict = apply_acm(channel.peer_address(), channel.channel().remote_static(), pool, acm, unix_ms());
  if (verdict != control::AcmVerdict::apply) {
    channel.send(control::Ack{acm.sequence, control::AckStatus::refused});
    return;
  }
  channel.send(control::Ack{acm.sequence, control::AckStatus::applied});
  // The connections now belong to the new server: it needs a channel to name them.
  Server& next = server_for(acm.new_address);
  next.register_all = true;
  open_channel(next);
  register_connections(next);
}

// Carriers still opening (SYN sent, nothing answered: no id yet, nothing registered) to
// the old endpoint: their SYN goes to the new one now, with the same ISN, so the local
// app sees one connect. An owner proof already armed names the old server's channel: the
// new server finds no such channel and takes the carrier without an owner, which its
// first registration then binds (ChannelServer::owns).
size_t Follower::redirect_opening(const IpAddress& old_remote, uint16_t old_port, const IpAddress& new_remote,
                                  uint16_t new_port) {
  std::vector<tcp_pcb*> opening;
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next) {
    if (pcb->state != SYN_SENT || pcb->remote_port == options_.port) continue;  // not our channels
    if (!(from_lwip(pcb->remote_ip) == old_remote) || (old_port != 0 && pcb->remote_port != old_port)) continue;
    opening.push_back(pcb);
  }
  for (tcp_pcb* pcb : opening) {
    migrate::set_remote_endpoint(pcb, new_remote, new_port);
    migrate::restart_transmission(pcb);
  }
  if (!opening.empty()) node_.kick();
  return opening.size();
}

void Follower::follow(const std::vector<tcp_pcb*>& pcbs, const IpAddress& new_address, uint16_t new_port,
                      const std::optional<crypto::HandoverToken>& token) {
  if (pcbs.empty()) return;
  // The segment-MAC key moves with the connection (the new server got it in the
  // snapshot): rebind before the rewrite, whose restarted transmission must be signed.
  if (segment_mac_) {
    for (tcp_pcb* pcb : pcbs) {
      FlowKey to = flow_of(pcb);
      to.remote = new_address;
      if (new_port != 0) to.remote_port = new_port;
      segment_mac_->rebind(flow_of(pcb), to);
    }
  }
  // With a handover the connections stay silent until their SYN-ACK is in.
  auto old_flows = migrate::rewrite_remote(std::span<tcp_pcb* const>(pcbs), new_address, new_port, !token);
  counters_.connections_moved += old_flows.size();
  uint64_t now = uv_hrtime();
  uint64_t now_ms = uv_now(node_.loop());
  uint64_t batch = tracker_.open_batch(endpoint_string(new_address, pcbs.front()->remote_port), pcbs.size(), now);
  for (size_t i = 0; i < old_flows.size(); ++i) {
    guard_.silence(old_flows[i], now_ms);
    FlowKey moved = flow_of(pcbs[i]);
    guard_.unsilence(moved);  // a flow may come back to a server it once left
    tracker_.gone(moved, now);  // a flow still awaited from an earlier move: superseded
    moving_ids_[moved] = connection_id(pcbs[i]);
    if (token) {
      if (handover_.start(pcbs[i], connection_id(pcbs[i]), *token, now_ms)) {
        tracker_.handover_started(batch, moved);
        continue;
      }
      ++counters_.handovers_unstarted;
      migrate::restart_transmission(pcbs[i]);
    }
    await_new_path(moved, batch);
  }
  run_machines();
  node_.kick();
}

void Follower::await_new_path(const FlowKey& flow, uint64_t batch) {
  guard_.watch(flow, [this, flow, alive = std::weak_ptr<bool>(alive_)] {
    if (!alive.expired() && !closed_) tracker_.heard(flow, uv_hrtime());
  });
  tracker_.await(flow, batch, uv_hrtime());
}

void Follower::on_handover_done(const FlowKey& flow, bool answered) {
  uint64_t batch = tracker_.batch_of_handover(flow);
  if (!tracker_.handover_finished(flow, answered, uv_hrtime())) {
    run_machines();  // the handover may have let a queued SYN go: its deadline counts
    return;
  }
  if (!answered)
    logger("migrate")->warn("handover {}: no SYN-ACK after {} SYNs; trying the direct path", flow.to_string(),
                            migrate::HandoverInitiator::max_syns);
  tcp_pcb* pcb = moving_pcb(flow);
  if (pcb == nullptr) {  // it ended meanwhile
    tracker_.ended(batch, uv_hrtime());
    run_machines();
    return;
  }
  migrate::restart_transmission(pcb);
  await_new_path(flow, batch);
  run_machines();
  node_.kick();
}

tcp_pcb* Follower::moving_pcb(const FlowKey& flow) const {
  auto it = moving_ids_.find(flow);
  return it != moving_ids_.end() ? migrate::find_connection_pcb(flow, it->second) : find_active_pcb(flow);
}

void Follower::run_machines() {
  if (closed_) return;
  // Two clocks: the loop's (ms) for the handover's SYN schedule and the guard, a finer
  // one (ns) for the tracker's changeover timing. Each deadline becomes a delay.
  uint64_t now_ms = uv_now(node_.loop());
  uint64_t next_ms = std::min(handover_.on_time(now_ms), guard_.on_time(now_ms));
  uint64_t now = uv_hrtime();
  uint64_t next = tracker_.on_time(now, [this](const FlowKey& flow, bool last) {
    using Result = migrate::ChangeoverTracker::PokeResult;
    tcp_pcb* pcb = moving_pcb(flow);
    if (pcb == nullptr) {
      guard_.unwatch(flow);
      return Result::gone;
    }
    if (!guard_.is_watched(flow)) return Result::heard;
    if (last) {
      guard_.unwatch(flow);
      logger("migrate")->warn("{}: the new server never answered", flow.to_string());
      return Result::given_up;
    }
    migrate::restart_transmission(pcb);
    return Result::poked;
  });
  if (tracker_.open_batches() == 0 && tracker_.awaiting() == 0) moving_ids_.clear();
  node_.kick();
  if (!timer_.valid()) return;
  uint64_t delay_ms = UINT64_MAX;
  if (next_ms != UINT64_MAX) delay_ms = next_ms > now_ms ? next_ms - now_ms : 0;
  if (next != UINT64_MAX) delay_ms = std::min<uint64_t>(delay_ms, next > now ? (next - now + 999'999) / 1'000'000 : 0);
  if (delay_ms == UINT64_MAX) {
    uv_timer_stop(timer_.get());
    return;
  }
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* timer) {
        if (auto* self = static_cast<Follower*>(timer->data)) self->run_machines();
      },
      delay_ms, 0);
}

}  // namespace roam
