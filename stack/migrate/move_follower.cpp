#include "stack/migrate/move_follower.hpp"

#include <fmt/format.h>

#include <chrono>
#include <utility>

#include "base/clock.hpp"
#include "base/config_error.hpp"
#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/lwip_address.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "base/log.hpp"

namespace roam {

namespace {
constexpr uint64_t poke_interval_ms = 20;  // the timer's tick, and the first poke's delay
constexpr uint64_t poke_max_interval_ms = 500;
constexpr int poke_attempts = 10;  // 20, 40, ... 500 ms: about 3.5 s; then the connection's own timers rule
constexpr uint64_t housekeeping_ms = 500;
constexpr uint64_t retry_after_failure_ms = 1000;
constexpr uint64_t retry_after_distrust_ms = 30'000;

}  // namespace

struct MoveFollower::Server {
  IpAddress address;
  std::unique_ptr<ChannelConnection> channel;
  bool trusted = false;           // the channel is established and the key accepted
  std::set<uint64_t> registered;  // ids registered on the current channel
  uint64_t retry_at_ms = 0;       // loop time before which no new channel is opened
};

MoveFollower::MoveFollower(Node& node, const ChannelOptions& options)
    : node_(node),
      options_(options),
      key_(load_identity(options)),
      handover_(node, [this](const FlowKey& flow, bool answered) { on_handover_done(flow, answered); }),
      guard_(node) {
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
  if (uv_timer_init(node_.loop(), poke_timer_.get()) == 0) poke_timer_.mark_initialized();
  poke_timer_.get()->data = this;
  start_repeating_timer<&MoveFollower::on_housekeeping>(housekeeping_timer_, node_.loop(), this, housekeeping_ms,
                                                        false);
}

MoveFollower::~MoveFollower() {
  close();
}

void MoveFollower::close() {
  if (closed_) return;
  closed_ = true;
  awaiting_.clear();
  handover_.close();
  if (poke_timer_.valid()) poke_timer_.close();
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

std::string MoveFollower::counters_text() const {
  const auto& c = counters_;
  return fmt::format(
      "follower: channels opened {} established {} failed {} untrusted {}; frames forged {} replayed {} "
      "dropped {}; ACMs {} applied {} "
      "refused {} (replayed {} stale {} wrong peer {} unknown connections {} bad address {}); connections moved {}",
      c.channels_opened, c.channels_established, c.channels_failed, c.servers_untrusted, c.frames_forged,
      c.frames_replayed, c.frames_dropped, c.acms, c.acms_applied, c.acms_refused, c.acms_replayed, c.acms_stale,
      c.acms_wrong_peer, c.acms_unknown_connections, c.acms_bad_address, c.connections_moved);
}

MoveFollower::Server& MoveFollower::server_for(const IpAddress& address) {
  auto& slot = servers_[address.to_string()];
  if (!slot) {
    slot = std::make_unique<Server>();
    slot->address = address;
  }
  return *slot;
}

std::vector<control::ClientConnection> MoveFollower::connections_with(const IpAddress& server) const {
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

void MoveFollower::track(tcp_pcb* pcb) {
  if (closed_ || pcb == nullptr || connection_id(pcb) == 0) return;
  // After the current input: lwIP sends this connection's last handshake ACK once the
  // connected callback returns, and the registration should not overtake it.
  IpAddress address = from_lwip(pcb->remote_ip);
  node_.defer([this, address, alive = std::weak_ptr<bool>(alive_)] {
    if (alive.expired() || closed_) return;
    Server& server = server_for(address);
    if (server.trusted) {
      register_connections(server);
    } else if (!server.channel) {
      open_channel(server);
    }
  });
}

void MoveFollower::open_channel(Server& server) {
  if (closed_ || server.channel || uv_now(node_.loop()) < server.retry_at_ms) return;
  std::string host_id = options_.host_id.empty() ? "client" : options_.host_id;
  auto channel = std::make_unique<control::ControlChannel>(
      crypto::NoisePattern::xx, crypto::NoiseRole::initiator, *key_,
      control::Hello{control::protocol_version, host_id, segment_mac_ ? capability_segment_mac : 0});
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
  node_.kick();
}

void MoveFollower::on_established(Server& server, ChannelConnection& channel) {
  ++counters_.channels_established;
  const auto& hello = channel.channel().peer_hello();
  const auto& key = channel.channel().remote_static();
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
    return;
  }
  if (verdict == crypto::TrustVerdict::learned) {
    logger("channel")->info("server {} ('{}'): key {} learned (trust on first use)", server.address.to_string(),
                            hello.host_id, crypto::to_base64(key));
  }
  save_known_hosts();
  server.trusted = true;
  logger("channel")->info("control channel to {} ('{}') established from local port {}", server.address.to_string(),
                          hello.host_id, channel.local_port());
  register_connections(server);
}

void MoveFollower::save_known_hosts() {
  if (options_.known_hosts_file.empty()) return;
  auto saved = known_hosts_.save(options_.known_hosts_file);
  if (!saved) logger("channel")->warn("cannot save {}: {}", options_.known_hosts_file, saved.error());
}

void MoveFollower::register_connections(Server& server) {
  if (!server.trusted || !server.channel) return;
  control::RegisterConnections message;
  bool sign = segment_mac_ && (server.channel->channel().peer_hello().capabilities & capability_segment_mac) != 0;
  for (const auto& c : connections_with(server.address)) {
    if (!server.registered.insert(c.id).second) continue;
    message.connection_ids.push_back(c.id);
    if (sign)
      segment_mac_->protect(find_pcb_by_connection_id(c.id), c.id, server.channel->channel().handshake_hash(),
                            crypto::SegmentDirection::client_to_server);
  }
  while (!message.connection_ids.empty()) {
    control::RegisterConnections part;
    size_t n = std::min(message.connection_ids.size(), control::max_connection_ids);
    part.connection_ids.assign(message.connection_ids.begin(), message.connection_ids.begin() + static_cast<long>(n));
    message.connection_ids.erase(message.connection_ids.begin(), message.connection_ids.begin() + static_cast<long>(n));
    if (!server.channel->send(part)) return;
    counters_.registrations_sent += n;
  }
}

void MoveFollower::on_closed(Server& server, const std::string& why) {
  if (!server.channel) return;
  if (!server.trusted) ++counters_.channels_failed;
  logger("channel")->info("control channel to {} closed: {}", server.address.to_string(), why);
  ChannelConnection* dying = server.channel.release();
  node_.defer([dying] { delete dying; });
  server.trusted = false;
  server.registered.clear();
  server.retry_at_ms = std::max(server.retry_at_ms, uv_now(node_.loop()) + retry_after_failure_ms);
}

void MoveFollower::on_housekeeping() {
  if (segment_mac_) segment_mac_->prune();
  for (auto it = servers_.begin(); it != servers_.end();) {
    Server& server = *it->second;
    bool has_connections = !connections_with(server.address).empty();
    if (!server.channel && !has_connections) {
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

void MoveFollower::on_message(Server& server, ChannelConnection& channel, const control::Message& message) {
  if (!server.trusted) return;
  if (const auto* acm = std::get_if<control::AddressChange>(&message)) {
    on_acm(server, channel, *acm);
  } else if (const auto* error = std::get_if<control::ErrorMessage>(&message)) {
    logger("channel")->warn("server {} reports error {}: {}", server.address.to_string(), error->code, error->text);
  }
}

void MoveFollower::refuse(ChannelConnection& channel, const control::AddressChange& acm, control::AcmVerdict verdict) {
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
    case control::AcmVerdict::apply:
      break;
  }
  uint64_t suppressed = 0;
  if (refusal_log_.allow(suppressed))
    logger("channel")->warn("refused an Address Change Message from {} (sequence {}): {} ({} more not logged)",
                            channel.peer_address().to_string(), acm.sequence, control::acm_verdict_name(verdict),
                            suppressed);
  channel.send(control::Ack{acm.sequence, control::AckStatus::refused});
}

void MoveFollower::on_acm(Server& server, ChannelConnection& channel, const control::AddressChange& acm) {
  ++counters_.acms;
  auto& filter = filters_
                     .try_emplace({channel.channel().remote_static(), server.address.to_string()},
                                  control::AcmLimits{options_.acm_max_age_ms, 5'000})
                     .first->second;
  uint64_t now = unix_ms();
  auto ours = connections_with(server.address);
  auto decision = filter.check(acm, channel.peer_address(), ours, now);
  if (decision.verdict != control::AcmVerdict::apply) {
    refuse(channel, acm, decision.verdict);
    return;
  }
  std::vector<tcp_pcb*> pcbs;
  for (uint64_t id : decision.connections)
    if (tcp_pcb* pcb = find_pcb_by_connection_id(id)) pcbs.push_back(pcb);
  filter.remember(acm, now);
  ++counters_.acms_applied;
  counters_.unknown_ids += decision.unknown_ids;
  uint16_t new_port = acm.new_port != 0 ? acm.new_port : acm.old_port;
  follow(pcbs, acm.new_address, acm.new_port, options_.handover ? acm.handover_token : std::nullopt);
  logger("migrate")->info("server {} moved to {}: {} connection(s) follow (ACM {})",
                          endpoint_string(acm.old_address, acm.old_port),
                          endpoint_string(acm.new_address, new_port), pcbs.size(), acm.sequence);
  channel.send(control::Ack{acm.sequence, control::AckStatus::applied});
  // The connections now belong to the new server: it needs a channel to name them.
  open_channel(server_for(acm.new_address));
  register_connections(server_for(acm.new_address));
}

void MoveFollower::follow(const std::vector<tcp_pcb*>& pcbs, const IpAddress& new_address, uint16_t new_port,
                          const std::optional<crypto::HandoverToken>& token) {
  if (pcbs.empty()) return;
  // With a handover the connections stay silent until their SYN-ACK is in.
  auto old_flows = migrate::rewrite_remote(std::span<tcp_pcb* const>(pcbs), new_address, new_port, !token);
  counters_.connections_moved += old_flows.size();
  uint64_t batch_id = next_batch_++;
  Batch& batch = batches_[batch_id];
  batch.target = endpoint_string(new_address, pcbs.front()->remote_port);
  batch.started_ns = uv_hrtime();
  batch.connections = pcbs.size();
  for (size_t i = 0; i < old_flows.size(); ++i) {
    // The new server signs with keys from its own channel, once we registered there.
    if (segment_mac_) segment_mac_->forget(old_flows[i]);
    guard_.silence(old_flows[i]);
    FlowKey moved = flow_of(pcbs[i]);
    guard_.unsilence(moved);  // a flow may come back to a server it once left
    std::erase_if(awaiting_, [&moved](const AwaitingPath& path) { return path.flow == moved; });
    if (token) {
      if (handover_.start(pcbs[i], connection_id(pcbs[i]), *token)) {
        handover_batch_[moved] = batch_id;
        ++batch.handovers;
        continue;
      }
      ++counters_.handovers_unstarted;
      migrate::restart_transmission(pcbs[i]);
    }
    await_new_path(moved, batch_id);
  }
  node_.kick();
}

void MoveFollower::await_new_path(const FlowKey& flow, uint64_t batch) {
  guard_.watch(flow, [this, flow, alive = std::weak_ptr<bool>(alive_)] {
    if (!alive.expired() && !closed_) on_heard(flow);
  });
  awaiting_.push_back({flow, poke_attempts, batch, uv_now(node_.loop()) + poke_interval_ms, poke_interval_ms});
  if (poke_timer_.valid() && !uv_is_active(poke_timer_.base())) {
    uv_timer_start(
        poke_timer_.get(),
        [](uv_timer_t* timer) {
          if (auto* self = static_cast<MoveFollower*>(timer->data)) self->poke_new_paths();
        },
        poke_interval_ms, poke_interval_ms);
  }
}

void MoveFollower::on_handover_done(const FlowKey& flow, bool answered) {
  auto entry = handover_batch_.find(flow);
  if (entry == handover_batch_.end()) return;
  uint64_t batch_id = entry->second;
  handover_batch_.erase(entry);
  auto batch = batches_.find(batch_id);
  if (batch == batches_.end()) return;
  Batch& b = batch->second;
  if (answered) {
    ++b.answered;
  } else {
    ++b.failed;
    logger("migrate")->warn("handover {}: no SYN-ACK after {} SYNs; trying the direct path", flow.to_string(),
                            migrate::HandoverInitiator::max_syns);
  }
  if (b.answered + b.failed == b.handovers)
    logger("migrate")->info("handover to {}: {} of {} connection(s) answered in {:.3f} ms", b.target, b.answered,
                            b.handovers, static_cast<double>(uv_hrtime() - b.started_ns) / 1e6);
  tcp_pcb* pcb = find_active_pcb(flow);
  if (pcb == nullptr) {  // it ended meanwhile
    ++b.unheard;
    settle(batch_id);
    return;
  }
  migrate::restart_transmission(pcb);
  await_new_path(flow, batch_id);
  node_.kick();
}

void MoveFollower::on_heard(const FlowKey& flow) {
  auto path =
      std::find_if(awaiting_.begin(), awaiting_.end(), [&flow](const AwaitingPath& p) { return p.flow == flow; });
  if (path == awaiting_.end()) return;
  uint64_t batch_id = path->batch;
  awaiting_.erase(path);
  if (auto batch = batches_.find(batch_id); batch != batches_.end()) {
    ++batch->second.heard;
    settle(batch_id);
  }
}

void MoveFollower::settle(uint64_t batch_id) {
  auto batch = batches_.find(batch_id);
  if (batch == batches_.end()) return;
  Batch& b = batch->second;
  if (b.heard + b.unheard < b.connections) return;
  logger("migrate")->info("changeover to {}: {} connection(s) heard from on the new path in {:.3f} ms after the ACM",
                          b.target, b.heard, static_cast<double>(uv_hrtime() - b.started_ns) / 1e6);
  batches_.erase(batch);
}

void MoveFollower::poke_new_paths() {
  uint64_t now = uv_now(node_.loop());
  std::erase_if(awaiting_, [this, now](AwaitingPath& path) {
    tcp_pcb* pcb = find_active_pcb(path.flow);
    if (pcb == nullptr || !guard_.is_watched(path.flow)) {  // gone, or heard on the new path
      guard_.unwatch(path.flow);
      if (auto batch = batches_.find(path.batch); batch != batches_.end()) {
        ++(pcb != nullptr ? batch->second.heard : batch->second.unheard);
        settle(path.batch);
      }
      return true;
    }
    // Backing off: a thousand connections moved at once must not flood the new path.
    if (now < path.next_poke_ms) return false;
    path.interval_ms = std::min(path.interval_ms * 2, poke_max_interval_ms);
    path.next_poke_ms = now + path.interval_ms;
    if (path.pokes_left-- <= 0) {
      guard_.unwatch(path.flow);
      ++counters_.unanswered;
      logger("migrate")->warn("{}: the new server never answered", path.flow.to_string());
      if (auto batch = batches_.find(path.batch); batch != batches_.end()) {
        ++batch->second.unheard;
        settle(path.batch);
      }
      return true;
    }
    ++counters_.pokes;
    migrate::restart_transmission(pcb);
    return false;
  });
  if (awaiting_.empty() && poke_timer_.valid()) uv_timer_stop(poke_timer_.get());
  node_.kick();
}

}  // namespace roam
