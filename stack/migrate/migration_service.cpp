#include "stack/migrate/migration_service.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "base/config_error.hpp"
#include "base/log.hpp"
#include "base/clock.hpp"
#include "base/socket_address.hpp"
#include "stack/connection_id.hpp"
#include "stack/flow_key.hpp"
#include "stack/node_counters.hpp"
#include "stack/migrate/address_answer.hpp"
#include "stack/migrate/stay_reason.hpp"

namespace roam {

namespace {

// "to=HOST:PORT count=N" -> fields; unknown words are errors.
bool parse_migrate_request(const std::string& text, MoveRequest& request, std::string& error) {
  size_t position = 0;
  while (position < text.size()) {
    size_t end = text.find(' ', position);
    if (end == std::string::npos) end = text.size();
    std::string word = text.substr(position, end - position);
    position = end + 1;
    if (word.empty()) continue;
    if (word.rfind("to=", 0) == 0) {
      request.target = word.substr(3);
    } else if (word.rfind("count=", 0) == 0) {
      try {
        request.limit = std::stoul(word.substr(6));
      } catch (const std::exception&) {
        error = "bad count '" + word.substr(6) + "'";
        return false;
      }
    } else {
      error = "unknown request field '" + word + "'";
      return false;
    }
  }
  if (request.target.empty()) {
    error = "no target: expected to=HOST:PORT";
    return false;
  }
  return true;
}

// Session frames go straight to the target's transfer stream.
struct StreamTransfer final : migrate::TransferLink {
  FrameStream& stream;
  explicit StreamTransfer(FrameStream& s) : stream(s) {}
  void send_session(std::vector<uint8_t> frame) override { stream.send_frame(std::move(frame)); }
};

using migrate::json_string;

}  // namespace

// The exporter's ClientDirectory: a connection's client is the control channel that
// registered it; moves are announced with one ACM per channel and old endpoint.
class MigrationService::ChannelDirectory final : public migrate::ClientDirectory {
 public:
  ChannelDirectory(ChannelServer& channels, MigrationCounters& counters) : channels_(channels), counters_(counters) {}

  const void* client_of(uint64_t connection_id) override { return channels_.channel_for(connection_id); }
  // The current move's target's pool certificate, shown to clients in each ACM.
  void set_target_credential(std::vector<uint8_t> credential) { target_credential_ = std::move(credential); }

  void announce(std::span<const migrate::MovedConnection> moved, const IpAddress& new_address) override {
    using Key = std::tuple<ChannelConnection*, std::string, uint16_t>;
    std::map<Key, control::AddressChange> acms;
    for (const auto& m : moved) {
      // The channel that registered it when the move started may have closed since.
      ChannelConnection* channel = channels_.channel_for(m.connection_id);
      if (channel == nullptr || channel != m.client) {
        ++counters_.acms_undeliverable;
        logger("migrate")->warn("{}: moved, but its client's control channel closed meanwhile",
                                m.old_flow.to_string());
        continue;
      }
      Key key{channel, m.old_flow.local.to_string(), m.old_flow.local_port};
      auto& acm = acms[key];
      if (acm.connection_ids.empty()) {
        acm.handover_token = m.token;
        acm.scope = control::AcmScope::connections;
        acm.old_address = m.old_flow.local;
        acm.old_port = m.old_flow.local_port;
        acm.new_address = new_address.version == m.old_flow.local.version ? new_address : m.old_flow.local;
        acm.new_port = m.old_flow.local_port;
        acm.target_credential = target_credential_;
      }
      acm.connection_ids.push_back(m.connection_id);
      if (acm.connection_ids.size() == control::max_connection_ids) {
        if (!channels_.send_acm(*channel, std::move(acm))) ++counters_.acms_undeliverable;
        acms.erase(key);
      }
    }
    std::map<ChannelConnection*, size_t> endpoints_of;
    for (const auto& [where, acm] : acms) ++endpoints_of[std::get<0>(where)];
    for (auto& [where, acm] : acms) {
      ChannelConnection* channel = std::get<0>(where);
      // Every id here is registered on this channel. When they are all of its ids, from
      // one endpoint, the global form says it in a few bytes, however many there are.
      const auto* registered = channels_.registered_ids(channel);
      if (endpoints_of[channel] == 1 && registered != nullptr && registered->size() == acm.connection_ids.size()) {
        acm.scope = control::AcmScope::global;
        acm.connection_ids.clear();
        ++counters_.acms_global;
      }
      if (!channels_.send_acm(*channel, std::move(acm))) ++counters_.acms_undeliverable;
    }
  }

 private:
  ChannelServer& channels_;
  MigrationCounters& counters_;
  std::vector<uint8_t> target_credential_;
};

MigrationService::MigrationService(Node& node, SessionTable& table, MigrationConfig config)
    : node_(node), table_(table), config_(std::move(config)) {
  key_ = load_identity(config_.channel);
  if (!config_.pool_certificate_file.empty()) {
    if (config_.channel.key_file.empty())
      throw ConfigError("--pool-cert needs --key: the certificate names this server's identity key");
    auto certificate =
        crypto::load_own_certificate(config_.pool_certificate_file, key_->public_key(), unix_ms() / 1000);
    if (!certificate) throw ConfigError("bad --pool-cert: " + certificate.error());
    pool_certificate_ = *certificate;
    auto encoded = crypto::encode_certificate(*pool_certificate_);
    credential_.assign(encoded.begin(), encoded.end());
    logger("migrate")->info("member of pool {}", crypto::to_base64(pool_certificate_->pool));
  }
  if (!config_.operators_file.empty()) {
    auto operators = crypto::AuthorizedKeys::load(config_.operators_file);
    if (!operators)
      throw ConfigError(fmt::format("bad --operators '{}'{}: {}", config_.operators_file,
                                    operators.error().line != 0 ? fmt::format(" line {}", operators.error().line) : "",
                                    operators.error().reason));
    operators_ = std::move(operators.value());
  }
  if (config_.channel.segment_mac) segment_mac_ = std::make_unique<SegmentMacGuard>(node_);
  channels_ = std::make_unique<ChannelServer>(
      node_, *key_, config_.channel.host_id.empty() ? config_.address4.to_string() : config_.channel.host_id,
      config_.channel.port, segment_mac_.get(),
      config_.channel.limits);
  channels_->set_hello_credential(credential_);
  if (config_.link_key_issuer) channels_->set_link_key_issuer(config_.link_key_issuer);
  directory_ = std::make_unique<ChannelDirectory>(*channels_, counters_);
  importer_ = std::make_unique<migrate::Importer>(
      node_, table_,
      migrate::ImportConfig{config_.channel.handover, config_.parked_timeout_ms, config_.address4, config_.address6},
      segment_mac_.get());
  // Once the client arrived, its registration (which may have come first) can be claimed.
  importer_->set_on_arrived([this](uint64_t id) {
    if (shut_down_) return;
    counters_.last_import_resumed_us = uv_hrtime() / 1000;
    channels_->claim_pending(id);
    auto moved = moved_in_.find(id);
    if (moved != moved_in_.end() && !moved->second.arrived_ms) {
      moved->second.arrived_ms = uv_now(node_.loop());
      changeover_seconds_.observe(static_cast<double>(uv_hrtime() - moved->second.imported_ns) / 1e9);
    }
  });
  // For roamctl show and the changeover histogram: when each session came, and how its
  // move went.
  importer_->set_on_imported([this](uint64_t id) {
    uint64_t now = uv_now(node_.loop());
    seen_[id] = now;
    moved_in_[id] = MovedIn{now, uv_hrtime(), std::nullopt};
    counters_.last_import_at_us = moved_in_[id].imported_ns / 1000;
  });
  // A client (or a proxy's new host) says its end of connections here moved (seed 003).
  channels_->set_on_peer_moved([this](tcp_pcb* pcb, uint64_t id, const crypto::HandoverToken& token,
                                      const std::optional<IpAddress>& direct) {
    if (shut_down_) return false;
    if (direct) return importer_->peer_moved_to(pcb, id, *direct);
    return importer_->expect_peer_move(pcb, id, token, uv_now(node_.loop()));
  });
  next_ratify_sequence_ = unix_ms() << 10;  // grows across restarts too, like the ACM's
  if (config_.keep_control && pool_certificate_) {
    control_pool_ = std::make_unique<migrate::ControlPool>(
        node_, config_.control_pool,
        [this](const std::string& target, FrameStream::FrameFn on_frame, FrameStream::ClosedFn on_closed,
               FrameStream::ConnectedFn on_connected) {
          return open_target(target, std::move(on_frame), std::move(on_closed), std::move(on_connected), false);
        });
  }
  register_counters();
  start_repeating_timer<&MigrationService::on_housekeeping>(housekeeping_timer_, node_.loop(), this, 1000, false);

  if (config_.control.empty()) return;
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!parse_socket_address(config_.control, address, length))
    throw ConfigError("bad --control '" + config_.control + "': expected IP:PORT");
  if (uv_tcp_init(node_.loop(), control_listener_.get()) != 0) throw ConfigError("cannot create the control socket");
  control_listener_.mark_initialized();
  control_listener_.get()->data = this;
  int rc = uv_tcp_bind(control_listener_.get(), reinterpret_cast<const sockaddr*>(&address), 0);
  if (rc == 0) rc = uv_listen(control_listener_.stream(), 64, &MigrationService::on_control_connection);
  if (rc != 0) throw ConfigError("cannot listen on control " + config_.control + ": " + uv_strerror(rc));
  logger("migrate")->info("control port {}: {} operator key(s){}, {}", config_.control,
                          operators_ ? operators_->size() : 0, config_.status_open ? ", status open to any peer" : "",
                          pool_certificate_ ? "transfers from pool members" : "in no pool (no moves in or out)");
}

MigrationService::~MigrationService() {
  shutdown();
  *alive_ = false;
}

void MigrationService::register_counters() {
  auto& r = registry_;
  const auto& c = counters_;
  r.add_gauge("migrate", "sessions", [this] { return table_.sessions().size(); });
  r.add_gauge("migrate", "sessions_movable",
              [this] { return table_.sessions().size() - unmovable_sessions(0).total; });
  r.add_gauge("migrate", "sessions_unmovable", [this] { return unmovable_sessions(0).total; });
  r.add("migrate", "exports_started", &c.exports_started);
  r.add_histogram("changeover", "seconds", &changeover_seconds_,
                  "Seconds from a session's import here until its client was first heard from on the new path");
  r.add("migrate", "sessions_exported", &c.sessions_exported);
  r.add("migrate", "sessions_export_failed", &c.sessions_export_failed);
  // The last move's readings, replaced by each move: gauges.
  r.add_gauge("migrate", "last_move_frozen_us", [&c] { return c.last_move_frozen_us; });
  r.add_gauge("migrate", "last_move_capture_us", [&c] { return c.last_move_capture_us; });
  r.add_gauge("migrate", "last_move_snapshot_bytes", [&c] { return c.last_move_snapshot_bytes; });
  r.add_gauge("migrate", "last_move_precopy_bytes", [&c] { return c.last_move_precopy_bytes; });
  r.add_gauge("migrate", "last_move_request_at_us", [&c] { return c.last_move_request_at_us; });
  r.add_gauge("migrate", "last_move_frozen_at_us", [&c] { return c.last_move_frozen_at_us; });
  r.add_gauge("migrate", "last_move_acm_at_us", [&c] { return c.last_move_acm_at_us; });
  r.add_gauge("migrate", "last_import_at_us", [&c] { return c.last_import_at_us; });
  r.add_gauge("migrate", "last_import_resumed_us", [&c] { return c.last_import_resumed_us; });
  r.add_gauge("migrate", "last_move_captured_at_us", [&c] { return c.last_move_captured_at_us; });
  r.add_gauge("migrate", "last_move_encoded_at_us", [&c] { return c.last_move_encoded_at_us; });
  r.add_gauge("migrate", "last_move_sent_at_us", [&c] { return c.last_move_sent_at_us; });
  r.add_gauge("migrate", "last_move_answer_read_at_us", [&c] { return c.last_move_answer_read_at_us; });
  r.add_gauge("migrate", "last_move_released_at_us", [&c] { return c.last_move_released_at_us; });
  r.add_gauge("migrate", "last_import_read_at_us", [&c] { return c.last_import_read_at_us; });
  r.add_gauge("migrate", "last_import_answered_at_us", [&c] { return c.last_import_answered_at_us; });
  r.add("precopy", "precopy_rounds", &c.precopy_rounds);
  r.add("precopy", "precopy_held_rounds", &c.precopy_held_rounds);
  r.add("precopy", "precopy_bytes_sent", &c.precopy_bytes_sent);
  r.add("precopy", "precopy_bytes_relied", &c.precopy_bytes_relied);
  r.add("precopy", "precopy_moves_refused", &c.precopy_moves_refused);
  r.add("precopy", "precopy_bytes_received", &c.precopy_bytes_received);
  r.add("precopy", "precopy_bytes_discarded", &c.precopy_bytes_discarded);
  r.add("precopy", "precopy_chunks_refused", &c.precopy_chunks_refused);
  r.add("precopy", "precopy_skipped_target", &c.precopy_skipped_target);
  r.add("precopy", "precopy_skipped_idle", &c.precopy_skipped_idle);
  r.add_gauge("precopy", "precopy_bytes_held", [this] { return precopy_in_use_; });
  const auto& i = importer_->counters();
  r.add("migrate", "sessions_imported", &i.sessions_imported);
  r.add("migrate", "imports_refused", &i.imports_refused);
  r.add("migrate", "origin_legs_untold", &i.origin_legs_untold);
  r.add("migrate", "peer_moves_expected", &i.peer_moves_expected);
  r.add("migrate", "peer_moves_rebound", &i.peer_moves_rebound);
  r.add("migrate", "bad_frames", &c.bad_frames);
  r.add("migrate", "sessions_without_channel", &c.sessions_without_channel);
  r.add("migrate", "acms_undeliverable", &c.acms_undeliverable);
  r.add("migrate", "acms_global", &c.acms_global);
  r.add("migrate", "sessions_closed_young", &c.sessions_closed_young);
  const auto& g = importer_->guard().counters();
  r.add("migrate", "silenced_input_drops", &g.silenced_input_drops);
  r.add("migrate", "parked_output_drops", &g.parked_output_drops);
  r.add("migrate", "unparked", &g.unparked);
  r.add_gauge("migrate", "parked", [this] { return importer_->guard().parked_count(); });
  r.add("migrate", "moves_timed_out", &c.moves_timed_out);
  r.add("migrate", "parked_expired", &i.parked_expired);
  r.add("precopy", "precopy_bytes_used", &i.precopy_bytes_used);
  r.add("precopy", "precopy_mismatches", &i.refused_precopy_mismatch);
  r.add("control", "control_refused", &c.control_refused);
  r.add("control", "control_handshake_failed", &c.control_handshake_failed);
  r.add("control", "control_handshake_timeouts", &c.control_handshake_timeouts);
  r.add("control", "control_over_capacity", &c.control_over_capacity);
  r.add("control", "targets_refused", &c.targets_refused);
  r.add("control", "control_idle_closed", &c.control_idle_closed);
  r.add("control", "control_over_key_cap", &c.control_over_key_cap);
  if (control_pool_) {
    const auto& p = control_pool_->counters();
    r.add("control", "control_connections_opened", &p.opened);
    r.add("control", "control_connections_reused", &p.reused);
    r.add("control", "control_connections_stale", &p.stale);
    r.add("control", "control_connections_pings", &p.pings);
    r.add("control", "control_connections_not_kept", &p.not_kept);
    r.add_gauge("control", "control_connections_cached", [this] { return control_pool_->ready_count(); });
  }
  r.add("inform", "informs_started", &c.informs_started);
  r.add("inform", "informs_done", &c.informs_done);
  r.add("inform", "informs_failed", &c.informs_failed);
  r.add("inform", "inform_clients", &c.inform_clients);
  r.add("inform", "transfers_sent", &c.transfers_sent);
  r.add("inform", "ratifies_accepted", &c.ratifies_accepted);
  r.add("inform", "ratifies_refused", &c.ratifies_refused);
  r.add("inform", "ratified_addresses", &c.ratified_addresses);
  const auto& k = channels_->counters();
  r.add_gauge("channel", "channels", [this] { return channels_->channel_count(); });
  r.add("channel", "channels_accepted", &k.channels_accepted);
  r.add("channel", "channels_established", &k.channels_established);
  r.add("channel", "channels_failed", &k.channels_failed);
  r.add("channel", "registrations", &k.registrations);
  r.add("channel", "registrations_refused", &k.registrations_refused);
  r.add("channel", "registrations_pending", &k.registrations_pending);
  r.add("channel", "registrations_foreign", &k.registrations_foreign);
  r.add("channel", "registrations_unproven", &k.registrations_unproven);
  r.add("channel", "registrations_unproven_refused", &k.registrations_unproven_refused);
  r.add("channel", "registrations_over_cap", &k.registrations_over_cap);
  r.add("channel", "channels_closed_refusals", &k.channels_closed_refusals);
  const auto& o = channels_->owner_proof_counters();
  r.add("channel", "owner_syns_proven", &o.syns_proven);
  r.add("channel", "owner_syns_unproven", &o.syns_unproven);
  r.add("channel", "owner_syns_unknown_channel", &o.syns_unknown_channel);
  r.add("channel", "owner_syns_forged", &o.syns_forged);
  r.add("channel", "owner_syns_malformed", &o.syns_malformed);
  r.add("channel", "channel_frames_dropped", &k.frames_dropped);
  r.add("channel", "unexpected_messages", &k.unexpected_messages);
  r.add("channel", "acms_sent", &k.acms_sent);
  r.add("channel", "acms_applied", &k.acms_applied);
  r.add("channel", "acms_refused", &k.acms_refused);
  r.add("channel", "client_errors", &k.client_errors);
  r.add("channel", "channel_handshakes_timed_out", &k.handshakes_timed_out);
  r.add("channel", "channels_refused", &k.channels_refused);
  r.add("channel", "channels_refused_source", &k.channels_refused_source);
  r.add("channel", "peer_moves", &k.peer_moves);
  r.add("channel", "link_keys_sent", &k.link_keys_sent);
  r.add("channel", "roam_updates_sent", &k.roam_updates_sent);
  r.add("channel", "roam_updates_unavailable", &k.roam_updates_unavailable);
  if (config_.link_roam != nullptr) {  // --udp-roam (PROTOCOL.md 3.8)
    const auto& lr = config_.link_roam->counters();
    r.add("link", "link_rebinds", &lr.rebinds);
    r.add("link", "link_rebinds_applied", &lr.rebinds_applied);
    r.add("link", "link_rebinds_unchanged", &lr.rebinds_unchanged);
    r.add("link", "link_rebinds_malformed", &lr.rebinds_malformed);
    r.add("link", "link_rebinds_unknown", &lr.rebinds_unknown);
    r.add("link", "link_rebinds_forged", &lr.rebinds_forged);
    r.add("link", "link_rebinds_replayed", &lr.rebinds_replayed);
    r.add("link", "link_rebinds_rate_limited", &lr.rebinds_rate_limited);
    r.add("link", "link_rx_wrong_inner", &lr.rx_wrong_inner);
  }
  r.add("channel", "peer_moves_applied", &k.peer_moves_applied);
  r.add("channel", "peer_moves_refused", &k.peer_moves_refused);
  r.add("channel", "peer_moves_stale", &k.peer_moves_stale);
  r.add("channel", "peer_moves_malformed", &k.peer_moves_malformed);
  r.add("channel", "peer_moves_unknown", &k.peer_moves_unknown);
  r.add("channel", "peer_moves_foreign", &k.peer_moves_foreign);
  r.add("channel", "peer_moves_disabled", &k.peer_moves_disabled);
  r.add("channel", "client_credentials_bad", &k.client_credentials_bad);
  const auto& h = importer_->handover().counters();
  r.add("handover", "handover_syns_accepted", &h.syns_accepted);
  r.add("handover", "handover_syns_repeated", &h.syns_repeated);
  r.add("handover", "handover_syns_forged", &h.syns_forged);
  r.add("handover", "handover_syns_replayed", &h.syns_replayed);
  r.add("handover", "handover_syns_unknown", &h.syns_unknown);
  r.add("handover", "handover_syns_malformed", &h.syns_malformed);
  r.add("handover", "handover_syns_refused", &h.syns_refused);
  r.add("handover", "handover_synacks_sent", &h.synacks_sent);
  r.add("handover", "handover_window_acks_consumed", &h.window_acks_consumed);
  if (segment_mac_) {
    const auto& s = segment_mac_->counters();
    r.add("segment_mac", "segment_mac_protected", &s.protected_connections);
    r.add("segment_mac", "segment_mac_signed", &s.signed_segments);
    r.add("segment_mac", "segment_mac_verified", &s.verified_segments);
    r.add("segment_mac", "segment_mac_dropped_missing", &s.dropped_missing);
    r.add("segment_mac", "segment_mac_dropped_bad", &s.dropped_bad);
  }
  register_node_counters(r, node_);
}

void MigrationService::shutdown() {
  if (shut_down_) return;
  if (exporter_) exporter_->abandon("server shutting down");
  if (inform_ && !inform_->moving) finish_inform("error server shutting down", false);
  streams_.clear();
  if (control_pool_) control_pool_->clear();
  if (control_listener_.valid()) control_listener_.close();
  if (housekeeping_timer_.valid()) housekeeping_timer_.close();
  if (channels_) channels_->shutdown();
  for (const char* group :
       {"migrate", "precopy", "control", "channel", "handover", "segment_mac", "defense", "inform"}) {
    std::string line = registry_.to_text(group);
    if (line != "nothing counted") logger("migrate")->info("{}: {}", group, line);
  }
  shut_down_ = true;
  importer_->shutdown();  // so the sessions' own close works on registered pcbs
}

void MigrationService::connection_accepted(tcp_pcb* pcb) {
  uint64_t id = connection_id(pcb);
  if (id == 0) return;
  seen_[id] = uv_now(node_.loop());
  if (config_.protect_older_than_ms != 0) young_[id] = uv_now(node_.loop());
}

// ------------------------------------------------------------------ control port

void MigrationService::on_control_connection(uv_stream_t* server, int status) noexcept {
  auto* self = static_cast<MigrationService*>(server->data);
  if (self == nullptr || status != 0) return;
  auto stream = std::make_unique<FrameStream>(
      self->node_.loop(), [self](FrameStream& s, migrate::Frame f) { self->on_control_frame(s, std::move(f)); },
      [self](FrameStream& s, const std::string& reason) {
        logger("migrate")->debug("control connection ended: {}", reason);
        // "closed": closed here (a timeout or over capacity, counted there) or after a reply.
        if (!s.authenticated() && reason != "closed") ++self->counters_.control_handshake_failed;
        self->forget_stream(&s);
      });
  size_t unauthenticated = 0;
  for (const auto& [raw, connection] : self->streams_)
    if (!connection.stream->authenticated()) ++unauthenticated;
  bool over_capacity = unauthenticated >= self->config_.max_unauthenticated_control;
  if (!over_capacity) {
    stream->secure(std::make_unique<crypto::NoiseStream>(crypto::NoiseRole::responder, *self->key_, self->credential_),
                   [self](FrameStream& s) { return self->authenticate_control_peer(s); });
  }
  if (!stream->accept_from(server)) return;
  if (over_capacity) {
    // Accepted only to be closed: a flood of half-open handshakes cannot crowd out operators
    // for longer than the handshake timeout.
    ++self->counters_.control_over_capacity;
    stream->close_after_writes();
    self->node_.defer([s = stream.release()] { delete s; });
    return;
  }
  FrameStream* raw = stream.get();
  self->streams_.emplace(raw, ControlConnection{std::move(stream), {}, uv_now(self->node_.loop()), nullptr});
}

// Who the peer is; never refuses the handshake itself, so a peer without rights gets a
// clear "not authorized" answer to its request instead of a closed connection.
bool MigrationService::authenticate_control_peer(FrameStream& stream) {
  auto found = streams_.find(&stream);
  if (found == streams_.end()) return false;
  const auto& noise = *stream.noise();
  auto& peer = found->second.peer;
  peer.operator_key = operators_ && operators_->contains(noise.remote_static());
  if (pool_certificate_ && !noise.peer_credential().empty()) {
    auto verified = crypto::verify_certificate(noise.peer_credential(), noise.remote_static(),
                                               pool_certificate_->pool, unix_ms() / 1000);
    peer.pool_member = verified.has_value();
    if (!verified)
      logger("migrate")->warn("control peer {} shows a pool certificate that does not count here: {}",
                              crypto::to_base64(noise.remote_static()), crypto::certificate_error_name(verified.error()));
  }
  logger("migrate")->debug("control peer {}{}{}", crypto::to_base64(noise.remote_static()),
                           peer.operator_key ? " operator '" + operators_->comment(noise.remote_static()) + "'" : "",
                           peer.pool_member ? " pool member" : "");
  found->second.last_frame_ms = uv_now(node_.loop());
  cap_connections_of_key(stream);
  return true;
}

// A pool member keeps a control connection open to each target between moves; one that
// restarted or lost track of its connections opens more. Beyond the cap, its oldest goes.
void MigrationService::cap_connections_of_key(FrameStream& stream) {
  const auto& key = stream.noise()->remote_static();
  std::vector<ControlConnection*> same;
  for (auto& [raw, connection] : streams_)
    if (raw != &stream && connection.stream->authenticated() && connection.stream->open() &&
        connection.stream->noise()->remote_static() == key)
      same.push_back(&connection);
  if (same.size() < config_.max_control_per_key) return;
  auto oldest = std::min_element(same.begin(), same.end(), [](const ControlConnection* a, const ControlConnection* b) {
    return a->opened_ms < b->opened_ms;
  });
  ++counters_.control_over_key_cap;
  logger("migrate")->info("control peer {}: more than {} connections: its oldest is closed", crypto::to_base64(key),
                          config_.max_control_per_key);
  (*oldest)->stream->close_after_writes();  // its closed callback forgets it
}

void MigrationService::close_idle_control(uint64_t now) {
  for (auto& [raw, connection] : streams_) {
    const auto& peer = connection.peer;
    if (!connection.stream->authenticated() || !connection.stream->open() || !peer.pool_member || peer.operator_key)
      continue;
    if (now - std::min(now, connection.last_frame_ms) < config_.control_idle_timeout_ms) continue;
    ++counters_.control_idle_closed;
    logger("migrate")->info("closing the idle control connection of pool member {}",
                            crypto::to_base64(connection.stream->noise()->remote_static()));
    connection.stream->close_after_writes();
  }
}

void MigrationService::forget_stream(FrameStream* stream) {
  // What its peer pre-copied goes now (a move that never sent its sessions).
  if (auto found = streams_.find(stream); found != streams_.end()) forget_precopy(found->second);
  // Never destroy a stream inside its own callback.
  node_.defer([this, stream] { streams_.erase(stream); });
}

void MigrationService::refuse(FrameStream& stream, migrate::ControlAccess access, migrate::FrameType type) {
  ++counters_.control_refused;
  uint64_t suppressed = 0;
  if (refusal_log_.allow(suppressed))
    logger("migrate")->warn("control port: refused a {} request from key {}: {} ({} more not logged)",
                            static_cast<int>(type), crypto::to_base64(stream.noise()->remote_static()),
                            migrate::control_access_text(access), suppressed);
  stream.send(migrate::FrameType::reply, std::string("error ") + migrate::control_access_text(access));
  stream.close_after_writes();
}

void MigrationService::on_control_frame(FrameStream& stream, migrate::Frame frame) {
  using migrate::FrameType;
  auto found = streams_.find(&stream);
  if (found == streams_.end()) return;
  found->second.last_frame_ms = uv_now(node_.loop());
  auto access = migrate::control_access(frame.type, found->second.peer, config_.status_open);
  if (access != migrate::ControlAccess::allowed && access != migrate::ControlAccess::not_a_request) {
    refuse(stream, access, frame.type);
    return;
  }
  switch (frame.type) {
    case FrameType::migrate_request:
      start_requested_move(stream, std::string(frame.payload.begin(), frame.payload.end()));
      return;
    case FrameType::status_request: {
      // An empty payload asks for the counters; "show" and "show text" for roamctl show.
      std::string what(frame.payload.begin(), frame.payload.end());
      // It names clients' keys and addresses: operators only, even with --status-open.
      if ((what == "show" || what == "show text") && !found->second.peer.operator_key) {
        refuse(stream, migrate::ControlAccess::needs_operator, frame.type);
        return;
      }
      if (what == "show")
        stream.send(FrameType::reply, migrate::render_show_json(show()));
      else if (what == "show text")
        stream.send(FrameType::reply, migrate::render_show_text(show()));
      else
        stream.send(FrameType::reply, status_json());
      return;
    }
    case FrameType::address_request: {
      // The features asked for that this server takes (none unless asked: PROTOCOL.md 4.3).
      migrate::TransferFeatures announced = migrate::decode_address_request(
          std::string_view(reinterpret_cast<const char*>(frame.payload.data()), frame.payload.size()));
      announced.precopy = announced.precopy && config_.precopy != PrecopyMode::off;
      // Each move on a connection starts with its address_request (PROTOCOL.md 4.6): what
      // an earlier move on it pre-copied and did not use is no move's any more.
      forget_precopy(found->second);
      stream.send(FrameType::reply, migrate::encode_address_answer(config_.address4, config_.address6, announced));
      return;
    }
    case FrameType::session:
      import_session(stream, frame);
      return;
    case FrameType::precopy:
      take_precopy(found->second, frame);
      return;
    case FrameType::precopy_sync:
      answer_precopy_sync(found->second);
      return;
    case FrameType::ratify:
      take_ratify(stream, frame);
      return;
    case FrameType::inform_request:
      start_requested_inform(stream, std::string(frame.payload.begin(), frame.payload.end()));
      return;
    default:
      ++counters_.bad_frames;
      stream.send(FrameType::reply, "error unexpected frame");
      stream.close_after_writes();
      return;
  }
}

void MigrationService::expire_unauthenticated(uint64_t now) {
  for (auto& [raw, connection] : streams_) {
    if (connection.stream->authenticated() || !connection.stream->open()) continue;
    if (now - connection.opened_ms < config_.control_handshake_timeout_ms) continue;
    ++counters_.control_handshake_timeouts;
    connection.stream->close_after_writes();  // its closed callback forgets it
  }
}

void MigrationService::start_requested_move(FrameStream& requester, const std::string& text) {
  MoveRequest request;
  std::string error;
  if (!parse_migrate_request(text, request, error)) {
    requester.send(migrate::FrameType::reply, "error " + error);
    return;
  }
  // The requester may hang up before the move ends: answer only if it is still here.
  FrameStream* asker = &requester;
  bool started = move_sessions(
      std::move(request),
      [this, asker](const migrate::ExportReport& report) {
        size_t total = report.candidates;
        // "ok" names the target by its carrier address, as the clients will see it: the one
        // it gave for the sessions it took, else the one it announced for their family.
        std::string reply =
            report.ok() ? fmt::format("ok moved {} of {} sessions to {} in {:.3f} ms", report.moved, total,
                                      target_carrier_address(report), report.elapsed_ms)
                        : fmt::format("error moved {} of {} sessions to {} in {:.3f} ms; {} failed: {}", report.moved,
                                      total, report.target, report.elapsed_ms, report.failed, report.error);
        if (std::string stayed = migrate::stayed_summary(report); report.ok() && !stayed.empty())
          reply += " (" + stayed + ")";
        logger("migrate")->info("{}", reply);
        if (streams_.count(asker) != 0 && asker->open()) asker->send(migrate::FrameType::reply, reply);
      },
      error);
  if (!started) requester.send(migrate::FrameType::reply, "error " + error);
}

// ------------------------------------------------------------------ old server: export

bool MigrationService::move_sessions(MoveRequest request, migrate::Exporter::DoneFn done, std::string& error) {
  if (shut_down_) {
    error = "server shutting down";
    return false;
  }
  if (exporter_) {
    error = "a migration is already running";
    return false;
  }
  if (!pool_certificate_) {
    error = "this server is in no pool (--pool-cert): it moves sessions only to members of its pool";
    return false;
  }
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!parse_socket_address(request.target, address, length)) {
    error = "bad target '" + request.target + "': expected IP:PORT";
    return false;
  }
  ++counters_.exports_started;
  move_done_ = std::move(done);
  transfer_retried_ = false;
  counters_.last_move_request_at_us = uv_hrtime() / 1000;
  begin_move(std::move(request));
  return true;
}

void MigrationService::begin_move(MoveRequest request) {
  current_request_ = request;  // its sessions as asked (empty: the table's, again on a retry)
  std::vector<MovableSession*> sessions = request.sessions.empty() ? table_.sessions() : request.sessions;
  if (sessions.size() > request.limit) sessions.resize(request.limit);
  migrate::ExportPolicy policy;
  policy.timeout_ms = config_.move_timeout_ms;
  policy.handover = config_.channel.handover;
  policy.precopy = config_.precopy != PrecopyMode::off;
  policy.precopy_idle_bytes = config_.precopy == PrecopyMode::automatic ? config_.precopy_auto_idle_bytes : 0;
  policy.precopy_max_rounds = config_.precopy_max_rounds;
  policy.precopy_hold_output = config_.precopy_hold_output;
  if (config_.protect_older_than_ms > 0) {
    policy.too_young = [this](uint64_t id) {
      auto young = young_.find(id);
      return young != young_.end() && uv_now(node_.loop()) - young->second < config_.protect_older_than_ms;
    };
  }
  channels_->forget_closed();  // before anything freezes
  exporter_ = std::make_unique<migrate::Exporter>(
      migrate::ExportServices{node_, table_, importer_->guard(), *directory_, segment_mac_.get()}, std::move(policy),
      request.target, std::move(sessions), uv_now(node_.loop()),
      [this](const migrate::ExportReport& report) { on_move_done(report); });
  transfer_refusal_.clear();
  awaiting_precopy_sync_ = false;
  awaiting_address_ = false;
  // Sessions freeze only once the target answered (its handshake, at least): a dead
  // target costs them nothing. It also tells its carrier addresses, so that the summary
  // can name it by them even when no session moves.
  target_addresses_.clear();
  FrameStream::FrameFn on_frame = [this](FrameStream& s, migrate::Frame f) {
    if (transfer_.get() == &s) on_transfer_answer(f);
  };
  FrameStream::ClosedFn on_closed = [this](FrameStream& s, const std::string& reason) {
    if (transfer_.get() == &s) on_transfer_closed(reason);
  };
  // A connection kept from an earlier move: authenticated already, so the move starts
  // with its address_request now (PROTOCOL.md 4.6). Its certificate is checked again (it
  // may have expired since) and goes into this move's ACMs.
  std::unique_ptr<FrameStream> cached =
      control_pool_ && !transfer_retried_ ? control_pool_->take(request.target) : nullptr;
  if (cached && !authenticate_target(*cached, request.target)) {
    FrameStream* raw = cached.release();
    raw->close_after_writes();
    node_.defer([raw] { delete raw; });
    transfer_refusal_.clear();
  }
  transfer_cached_ = cached != nullptr;
  transfer_started_ms_ = uv_now(node_.loop());
  if (cached) {
    transfer_ = std::move(cached);
    transfer_->rebind(std::move(on_frame), std::move(on_closed));
    logger("migrate")->info("migrating sessions to {} (control connection kept from an earlier move)", request.target);
    target_ready();
    return;
  }
  logger("migrate")->info("migrating sessions to {}", request.target);
  transfer_ = open_target(
      request.target, std::move(on_frame), std::move(on_closed),
      [this](FrameStream& s) {
        if (transfer_.get() == &s) target_ready();
      },
      true);
  if (!transfer_) {
    exporter_->abandon("cannot connect to " + request.target);
    return;
  }
  if (control_pool_) control_pool_->note_opened();
}

std::unique_ptr<FrameStream> MigrationService::open_target(const std::string& target, FrameStream::FrameFn on_frame,
                                                           FrameStream::ClosedFn on_closed,
                                                           FrameStream::ConnectedFn on_connected, bool for_move) {
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!parse_socket_address(target, address, length)) return nullptr;
  auto stream = std::make_unique<FrameStream>(node_.loop(), std::move(on_frame), std::move(on_closed));
  stream->secure(std::make_unique<crypto::NoiseStream>(crypto::NoiseRole::initiator, *key_, credential_),
                 [this, target, for_move](FrameStream& s) { return authenticate_target(s, target, for_move); });
  if (!stream->connect(reinterpret_cast<const sockaddr*>(&address), std::move(on_connected))) return nullptr;
  // A kept connection whose target's host vanished (no FIN, no RST) is noticed by the
  // kernel too, not only by the pool's ping.
  if (control_pool_)
    stream->keepalive(static_cast<unsigned>(std::max<uint64_t>(1, config_.control_pool.ping_after_ms / 1000)));
  return stream;
}

void MigrationService::target_ready() {
  // It asks whether the target takes pre-copy only when this server would use it.
  migrate::TransferFeatures wanted;
  wanted.precopy = config_.precopy != PrecopyMode::off;
  transfer_->send(migrate::FrameType::address_request, migrate::encode_address_request(wanted));
  awaiting_address_ = true;
  // The target has answered already: it proved its pool membership in the handshake
  // (authenticate_target). Without pre-copy nothing needs its addresses before the
  // freeze, so the sessions go now, right behind the request, one round trip to the
  // target earlier (a round trip of two loops: 1-3 ms on a loaded host, each one
  // inside every connection's changeover). Its answer comes first (answers keep the
  // frames' order); anything but addresses still abandons the move, every session
  // resumed here. A move that may pre-copy needs the answer first (its `precopy`
  // feature: an old target refuses the rounds).
  if (exporter_ && exporter_->would_freeze_any() && exporter_->precopy_ruled_out()) precopy_or_start();
}

void MigrationService::on_transfer_closed(const std::string& reason) {
  if (!exporter_) return;
  if (!retry_on_new_connection(reason))
    exporter_->abandon("target " + exporter_->target() + ": " +
                       (transfer_refusal_.empty() ? reason : transfer_refusal_));
}

bool MigrationService::retry_on_new_connection(const std::string& reason) {
  if (transfer_cached_ && awaiting_address_ && !transfer_retried_) {
    // Nothing came back on a connection kept since an earlier move: it was stale (the
    // target restarted, or the path broke while it idled). The sessions sent on it, if
    // any, resume here; the move starts again, once, on a new connection.
    control_pool_->note_stale();
    transfer_retried_ = true;
    retry_pending_ = true;
    logger("migrate")->info("the kept control connection to {} is stale ({}): moving on a new one", exporter_->target(),
                            reason);
    exporter_->abandon("kept control connection stale: " + reason);
    return true;
  }
  return false;
}

// The target must prove membership of this server's pool before anything freezes: its
// static key certified by the pool key. Its certificate then goes to the clients in the ACMs.
bool MigrationService::authenticate_target(FrameStream& stream, const std::string& target, bool for_move) {
  const auto& noise = *stream.noise();
  auto verified = crypto::verify_certificate(noise.peer_credential(), noise.remote_static(), pool_certificate_->pool,
                                             unix_ms() / 1000);
  if (!verified) {
    ++counters_.targets_refused;
    std::string refusal = fmt::format(
        "not a member of this pool ({}; key {})",
        noise.peer_credential().empty() ? "no pool certificate" : crypto::certificate_error_name(verified.error()),
        crypto::to_base64(noise.remote_static()));
    logger("migrate")->warn("refusing to {} {}: {}", for_move ? "move sessions to" : "keep a control connection to",
                            target, refusal);
    if (for_move) transfer_refusal_ = std::move(refusal);
    return false;
  }
  if (for_move) directory_->set_target_credential(noise.peer_credential());
  return true;
}

void MigrationService::on_transfer_answer(const migrate::Frame& frame) {
  if (!exporter_) return;
  if (!exporter_->started() && awaiting_precopy_sync_) {
    on_precopy_answer(frame);
    return;
  }
  if (awaiting_address_) {
    awaiting_address_ = false;
    // The answer to address_request: before any session was sent, or pipelined ahead of
    // their results (a refusal is quoted, cut to a line's length).
    std::string text;
    if (frame.type == migrate::FrameType::reply)
      text.assign(frame.payload.begin(), frame.payload.begin() + static_cast<std::ptrdiff_t>(
                                                                     std::min<size_t>(frame.payload.size(), 200)));
    auto answer = migrate::decode_address_answer(text);
    if (!answer) {
      ++counters_.bad_frames;
      exporter_->abandon("target did not tell its carrier addresses" +
                         (text.empty() ? std::string() : " (it answered '" + text + "')"));
      return;
    }
    target_addresses_ = std::move(answer->addresses);
    if (!exporter_->started()) {
      exporter_->decide_precopy(answer->features.precopy);
      precopy_or_start();
    }
    return;
  }
  auto result =
      frame.type == migrate::FrameType::session_result ? migrate::decode_session_result(frame.payload) : std::nullopt;
  if (!result) {
    ++counters_.bad_frames;
    exporter_->abandon("target sent an unexpected frame");
    return;
  }
  exporter_->on_result(*result, transfer_->last_read_ns());
}

// Pre-copy rounds while they are worth it, then the freeze (Exporter::start). Nothing
// freezes before the target confirmed what it holds.
void MigrationService::precopy_or_start() {
  StreamTransfer link(*transfer_);
  if (exporter_->precopy_wants_round() && exporter_->precopy_round(link) > 0) {
    awaiting_precopy_sync_ = true;
    return;
  }
  if (exporter_->precopy_wants_held_round() && exporter_->precopy_held_round(link) > 0) {
    awaiting_precopy_sync_ = true;
    return;
  }
  exporter_->start(link);
}

void MigrationService::on_precopy_answer(const migrate::Frame& frame) {
  awaiting_precopy_sync_ = false;
  if (frame.type != migrate::FrameType::reply) {
    ++counters_.bad_frames;
    exporter_->abandon("target sent an unexpected frame");
    return;
  }
  // What it holds; nullopt (an "error ...") is a refusal.
  exporter_->precopy_confirmed(migrate::decode_precopy_sync_answer(
      std::string_view(reinterpret_cast<const char*>(frame.payload.data()), frame.payload.size())));
  precopy_or_start();
}

std::string MigrationService::target_carrier_address(const migrate::ExportReport& report) const {
  if (report.moved > 0) return report.new_address.to_string();
  // Nothing moved: the target's address of the family of this server's sessions.
  auto family = report.sessions.empty() ? config_.address4.version : report.sessions.front().flow.local.version;
  for (const auto& address : target_addresses_)
    if (address.version == family) return address.to_string();
  if (!target_addresses_.empty()) return target_addresses_.front().to_string();
  return report.target;  // not reached for an "ok" report: the exporter starts on the answer
}

MigrationService::Unmovable MigrationService::unmovable_sessions(size_t max_listed) {
  Unmovable out;
  for (MovableSession* session : table_.sessions()) {
    std::vector<SessionLeg> legs = session->legs();
    auto why = migrate::why_session_stays(*session, legs, importer_->guard());
    for (size_t i = 0; !why && i < legs.size(); ++i)
      if (legs[i].role == LegRole::client && directory_->client_of(connection_id(legs[i].pcb)) == nullptr)
        why = migrate::no_channel_reason();
    if (!why) continue;
    ++out.total;
    if (out.listed.size() < max_listed) out.listed.push_back({session, std::move(*why)});
  }
  return out;
}

std::string MigrationService::status_json() {
  std::string out = registry_.to_json();
  out.pop_back();  // its closing brace: the sessions that cannot move follow
  out += ",\"unmovable\":[";
  Unmovable unmovable = unmovable_sessions(max_unmovable_listed);
  for (size_t i = 0; i < unmovable.listed.size(); ++i) {
    const auto& [session, why] = unmovable.listed[i];
    std::vector<SessionLeg> legs = session->legs();
    FlowKey flow = !legs.empty() && legs.front().pcb != nullptr ? flow_of(legs.front().pcb) : FlowKey{};
    out += fmt::format(
        "{}{{\"kind\":{},\"local_address\":{},\"local_port\":{},\"remote_address\":{},\"remote_port\":{},"
        "\"label\":{},\"reason\":{}}}",
        i == 0 ? "" : ",", json_string(session->kind()), json_string(flow.local.to_string()), flow.local_port,
        json_string(flow.remote.to_string()), flow.remote_port, json_string(why.label), json_string(why.text));
  }
  out += "]}";
  return out;
}

migrate::ServerShow MigrationService::show() {
  migrate::ServerShow out;
  uint64_t now = uv_now(node_.loop());
  out.key = crypto::to_base64(key_->public_key());
  if (pool_certificate_) out.pool = crypto::to_base64(pool_certificate_->pool);
  out.address = config_.address4.to_string();
  if (config_.address6) out.address6 = config_.address6->to_string();
  for (const auto& view : channels_->describe()) {
    migrate::ShowChannel channel;
    if (view.key) channel.key = crypto::to_base64(*view.key);
    channel.flow.remote = view.address;
    channel.flow.remote_port = view.port;
    channel.age_ms = now - std::min(now, view.opened_ms);
    channel.connections = view.connections;
    out.channels.push_back(std::move(channel));
  }
  for (MovableSession* session : table_.sessions()) {
    ++out.sessions_total;
    if (out.sessions.size() >= migrate::ServerShow::max_listed) continue;
    migrate::ShowSession shown;
    shown.kind = session->kind();
    std::vector<SessionLeg> legs = session->legs();
    auto why = migrate::why_session_stays(*session, legs, importer_->guard());
    shown.movable = !why;
    if (why) shown.stays = why->label;
    for (const auto& leg : legs) {
      if (leg.pcb == nullptr) continue;
      uint64_t id = connection_id(leg.pcb);
      if (shown.legs.empty()) shown.id = id;
      migrate::ShowLeg shown_leg;
      shown_leg.role = leg_role_name(leg.role);
      shown_leg.flow = flow_of(leg.pcb);
      // The id is client ISN << 32 | server ISN: a client leg was opened by the peer, an
      // origin leg by this host. Each side's first byte is its ISN + 1.
      auto high = static_cast<uint32_t>(id >> 32);
      auto low = static_cast<uint32_t>(id);
      uint32_t peer_isn = leg.role == LegRole::client ? high : low;
      uint32_t own_isn = leg.role == LegRole::client ? low : high;
      shown_leg.bytes_in = static_cast<uint32_t>(leg.pcb->rcv_nxt - peer_isn - 1);
      shown_leg.bytes_out = static_cast<uint32_t>(leg.pcb->lastack - own_isn - 1);
      if (id == 0) shown_leg.bytes_in = shown_leg.bytes_out = 0;
      shown.legs.push_back(std::move(shown_leg));
    }
    if (auto seen = seen_.find(shown.id); seen != seen_.end()) shown.age_ms = now - std::min(now, seen->second);
    if (auto moved = moved_in_.find(shown.id); moved != moved_in_.end()) {
      shown.moved_in_ago_ms = now - std::min(now, moved->second.imported_ms);
      if (moved->second.arrived_ms) shown.changeover_ms = *moved->second.arrived_ms - moved->second.imported_ms;
    }
    out.sessions.push_back(std::move(shown));
  }
  out.counters = registry_.read();
  return out;
}

void MigrationService::on_move_done(const migrate::ExportReport& report) {
  // Every answer in, nothing pending on it: the connection can carry the next move there.
  bool keep = control_pool_ && transfer_ && transfer_->open() && transfer_->authenticated() && !awaiting_address_ &&
              !awaiting_precopy_sync_ && exporter_ && !exporter_->abandoned();
  if (retry_pending_) {
    // Abandoned only to start again on a new connection: no outcome of it counts.
    retry_pending_ = false;
    migrate::Exporter* finished = exporter_.release();
    FrameStream* stream = transfer_.release();
    node_.defer([finished, stream] {
      delete finished;
      delete stream;
    });
    begin_move(current_request_);
    return;
  }
  counters_.sessions_exported += report.moved;
  counters_.sessions_export_failed += report.failed;
  counters_.last_move_frozen_us = static_cast<uint64_t>(report.frozen_ms_max * 1000);
  counters_.last_move_capture_us = static_cast<uint64_t>(report.capture_ms_max * 1000);
  counters_.last_move_snapshot_bytes = report.snapshot_stream_bytes;
  // The exporter's finish() handed the ACMs to the client channels just before this call.
  counters_.last_move_frozen_at_us = report.first_frozen_ns / 1000;
  counters_.last_move_captured_at_us = report.first_stages.captured_ns / 1000;
  counters_.last_move_encoded_at_us = report.first_stages.encoded_ns / 1000;
  counters_.last_move_sent_at_us = report.first_stages.sent_ns / 1000;
  counters_.last_move_answer_read_at_us = report.first_stages.answer_read_ns / 1000;
  counters_.last_move_released_at_us = report.first_stages.released_ns / 1000;
  counters_.last_move_acm_at_us = uv_hrtime() / 1000;
  counters_.precopy_rounds += report.precopy_rounds;
  if (report.precopy_held_round) ++counters_.precopy_held_rounds;
  counters_.precopy_bytes_sent += report.precopy_bytes;
  counters_.precopy_bytes_relied += report.precopy_bytes_relied;
  counters_.last_move_precopy_bytes = report.precopy_bytes_relied;
  if (report.precopy_refused) ++counters_.precopy_moves_refused;
  if (report.precopy_skipped == migrate::PrecopySkip::target) ++counters_.precopy_skipped_target;
  if (report.precopy_skipped == migrate::PrecopySkip::idle) ++counters_.precopy_skipped_idle;
  awaiting_precopy_sync_ = false;
  for (const auto& s : report.sessions) {
    if (s.outcome == migrate::SessionOutcome::no_channel) ++counters_.sessions_without_channel;
    if (s.outcome == migrate::SessionOutcome::closed_young) ++counters_.sessions_closed_young;
  }
  // Inside the exporter's own call: destroy it (and the stream, maybe in its callback) later.
  migrate::Exporter* finished = exporter_.release();
  FrameStream* stream = transfer_.release();
  // Handed to the cache only out of its own callbacks (rebinding them).
  node_.defer([finished, stream, keep, target = report.target, alive = alive_, this] {
    delete finished;
    if (keep && *alive && !shut_down_ && control_pool_)
      control_pool_->put(target, std::unique_ptr<FrameStream>(stream));
    else
      delete stream;
  });
  auto done = std::move(move_done_);
  move_done_ = nullptr;
  if (done) done(report);
}

// ------------------------------------------------------------------ new server: import

void MigrationService::take_precopy(ControlConnection& connection, const migrate::Frame& frame) {
  if (!connection.precopy)
    connection.precopy = std::make_unique<migrate::PrecopyStore>(config_.precopy_budget_bytes, precopy_in_use_);
  auto& store = *connection.precopy;
  uint64_t discarded = store.bytes_discarded();
  auto chunk = migrate::decode_precopy_payload(frame.payload);
  if (!chunk) {
    // Counted, and remembered until the sync: the sender then relies on nothing.
    ++counters_.precopy_chunks_refused;
    store.note_refused();
    return;
  }
  counters_.precopy_bytes_received += chunk->bytes.size();
  if (!store.take(*chunk)) ++counters_.precopy_chunks_refused;
  counters_.precopy_bytes_discarded += store.bytes_discarded() - discarded;
}

void MigrationService::answer_precopy_sync(ControlConnection& connection) {
  size_t refused = connection.precopy ? connection.precopy->take_refusals() : 0;
  if (refused != 0) {
    connection.stream->send(migrate::FrameType::reply,
                            fmt::format("error precopy: {} chunk(s) refused (malformed or over the budget)", refused));
    return;
  }
  connection.stream->send(migrate::FrameType::reply, migrate::encode_precopy_sync_answer(
                                                          connection.precopy ? connection.precopy->held_bytes() : 0));
}

void MigrationService::forget_precopy(ControlConnection& connection) {
  if (!connection.precopy) return;
  uint64_t discarded = connection.precopy->bytes_discarded();
  connection.precopy->clear();
  counters_.precopy_bytes_discarded += connection.precopy->bytes_discarded() - discarded;
  connection.precopy.reset();
}

void MigrationService::import_session(FrameStream& stream, const migrate::Frame& frame) {
  auto found = streams_.find(&stream);
  migrate::PrecopyStore* store = found != streams_.end() ? found->second.precopy.get() : nullptr;
  uint64_t discarded = store != nullptr ? store->bytes_discarded() : 0;
  counters_.last_import_read_at_us = stream.last_read_ns() / 1000;
  auto imported = importer_->import_session(frame.payload, uv_now(node_.loop()), store);
  if (store != nullptr) counters_.precopy_bytes_discarded += store->bytes_discarded() - discarded;
  if (imported)
    stream.send(migrate::FrameType::session_result, migrate::encode_session_result(true, imported->to_string()));
  else
    stream.send(migrate::FrameType::session_result, migrate::encode_session_result(false, imported.error()));
  counters_.last_import_answered_at_us = uv_hrtime() / 1000;
}

Result<IpAddress, std::string> MigrationService::import_resumed(std::span<const uint8_t> session_payload) {
  return importer_->import_session(session_payload, uv_now(node_.loop()));
}

void MigrationService::on_housekeeping() {
  uint64_t now = uv_now(node_.loop());
  expire_unauthenticated(now);
  close_idle_control(now);
  if (control_pool_) control_pool_->on_time(now);
  importer_->on_time(now);
  channels_->claim_pending();
  if (!exporter_) channels_->forget_closed();
  // A frozen connection is out of lwIP's active list (freeze_pcb): without asking the
  // move guard, prune took it for ended and forgot its MAC key, and after a refused move
  // it went on unsigned while its peer dropped every segment (ASan CI run, migrate_precopy).
  if (segment_mac_)
    segment_mac_->prune([this](const FlowKey& flow) { return importer_->guard().is_silenced(flow); });
  // Connections that grew old (or ended) need no entry: no entry means old.
  auto gone = [](const auto& entry) { return find_pcb_by_connection_id(entry.first) == nullptr; };
  std::erase_if(seen_, gone);
  std::erase_if(moved_in_, gone);
  std::erase_if(young_, [&](const auto& entry) {
    return now - entry.second >= config_.protect_older_than_ms || find_pcb_by_connection_id(entry.first) == nullptr;
  });
  if (inform_ && !inform_->moving && now - inform_->started_ms >= config_.move_timeout_ms)
    finish_inform("error the next proxy " + inform_->target + " did not answer in time: nothing was sent", false);
  // A kept connection that neither answered the move's address_request nor closed (its
  // target's host vanished without a FIN or RST): stale, like one that closed.
  if (exporter_ && transfer_cached_ && awaiting_address_ && !transfer_retried_ &&
      now - transfer_started_ms_ >= config_.control_pool.answer_timeout_ms)
    retry_on_new_connection("no answer in " + std::to_string(config_.control_pool.answer_timeout_ms) + " ms");
  if (exporter_ && now >= exporter_->deadline()) {
    ++counters_.moves_timed_out;
    exporter_->on_time(now);
  }
}

}  // namespace roam
