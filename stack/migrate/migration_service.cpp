#include "stack/migrate/migration_service.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <set>
#include <tuple>

#include "base/clock.hpp"
#include "base/config_error.hpp"
#include "stack/connection_id.hpp"
#include "stack/lwip_address.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "base/log.hpp"
#include "tun/udp_link.hpp"

namespace roam {

namespace {

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

// "to=HOST:PORT count=N" -> fields; unknown words are errors.
bool parse_migrate_request(const std::string& text, std::string& target, size_t& limit, std::string& error) {
  size_t position = 0;
  while (position < text.size()) {
    size_t end = text.find(' ', position);
    if (end == std::string::npos) end = text.size();
    std::string word = text.substr(position, end - position);
    position = end + 1;
    if (word.empty()) continue;
    if (word.rfind("to=", 0) == 0) {
      target = word.substr(3);
    } else if (word.rfind("count=", 0) == 0) {
      try {
        limit = std::stoul(word.substr(6));
      } catch (const std::exception&) {
        error = "bad count '" + word.substr(6) + "'";
        return false;
      }
    } else {
      error = "unknown request field '" + word + "'";
      return false;
    }
  }
  if (target.empty()) {
    error = "no target: expected to=HOST:PORT";
    return false;
  }
  return true;
}

}  // namespace

struct MigrationService::Export {
  struct Item {
    MovableSession* session = nullptr;
    tcp_pcb* pcb = nullptr;
    FlowKey key;
    uint64_t connection_id = 0;
    bool settled = false;
  };
  FrameStream* requester = nullptr;
  std::unique_ptr<FrameStream> peer;
  std::string target;
  size_t limit = SIZE_MAX;
  std::vector<Item> items;
  size_t results = 0;
  size_t moved = 0;
  size_t failed = 0;
  size_t skipped = 0;
  std::string first_error;
  IpAddress new_address;
  uint64_t started_ns = 0;
  uint64_t deadline_ms = 0;
  size_t candidates = 0;  // sessions in the table when the request came
  // One NAT handover token per client channel (--handover always).
  std::map<ChannelConnection*, crypto::HandoverToken> tokens;
};

MigrationService::MigrationService(Node& node, SessionTable& table, MigrationConfig config)
    : node_(node),
      table_(table),
      config_(std::move(config)),
      responder_(node, config_.channel.handover,
                 [this](const FlowKey& parked, const IpAddress& client, uint16_t port) {
                   return rebind_parked(parked, client, port);
                 }),
      guard_(node) {
  key_ = load_identity(config_.channel);
  if (config_.channel.segment_mac) segment_mac_ = std::make_unique<SegmentMacGuard>(node_);
  channels_ = std::make_unique<ChannelServer>(
      node_, *key_, config_.channel.host_id.empty() ? config_.address4.to_string() : config_.channel.host_id,
      config_.channel.port, segment_mac_.get());
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
  logger("migrate")->info("control port {} (unauthenticated: keep it on loopback or a management network)",
                          config_.control);
}

MigrationService::~MigrationService() {
  shutdown();
}

void MigrationService::shutdown() {
  if (export_) abandon_export("server shutting down");
  streams_.clear();
  if (control_listener_.valid()) control_listener_.close();
  if (housekeeping_timer_.valid()) housekeeping_timer_.close();
  parked_imports_.clear();
  if (channels_) channels_->shutdown();
  if (segment_mac_ && !shut_down_) logger("channel")->info("{}", segment_mac_->counters_text());
  shut_down_ = true;
  guard_.unpark_all();  // so the sessions' own close works on registered pcbs
}

void MigrationService::connection_accepted(tcp_pcb* pcb) {
  if (config_.protect_older_than_ms == 0) return;
  uint64_t id = connection_id(pcb);
  if (id != 0) young_[id] = uv_now(node_.loop());
}

const IpAddress& MigrationService::own_address(uint8_t version) const {
  if (version == 6 && config_.address6) return *config_.address6;
  return config_.address4;
}

void MigrationService::on_control_connection(uv_stream_t* server, int status) noexcept {
  auto* self = static_cast<MigrationService*>(server->data);
  if (self == nullptr || status != 0) return;
  auto stream = std::make_unique<FrameStream>(
      self->node_.loop(), [self](FrameStream& s, migrate::Frame f) { self->on_control_frame(s, std::move(f)); },
      [self](FrameStream& s, const std::string& reason) {
        logger("migrate")->debug("control connection ended: {}", reason);
        self->forget_stream(&s);
      });
  if (!stream->accept_from(server)) return;
  FrameStream* raw = stream.get();
  self->streams_.emplace(raw, std::move(stream));
}

void MigrationService::forget_stream(FrameStream* stream) {
  if (export_ && export_->requester == stream) export_->requester = nullptr;
  // Never destroy a stream inside its own callback.
  node_.defer([this, stream] { streams_.erase(stream); });
}

void MigrationService::on_control_frame(FrameStream& stream, migrate::Frame frame) {
  using migrate::FrameType;
  switch (frame.type) {
    case FrameType::migrate_request:
      start_export(stream, std::string(frame.payload.begin(), frame.payload.end()));
      return;
    case FrameType::status_request:
      stream.send(FrameType::reply, status_json());
      return;
    case FrameType::session:
      import_session(stream, frame);
      return;
    default:
      ++counters_.bad_frames;
      stream.send(FrameType::reply, "error unexpected frame");
      stream.close_after_writes();
      return;
  }
}

// ------------------------------------------------------------------ old server: export

void MigrationService::start_export(FrameStream& requester, const std::string& request) {
  if (export_) {
    requester.send(migrate::FrameType::reply, "error a migration is already running");
    return;
  }
  auto job = std::make_unique<Export>();
  std::string error;
  if (!parse_migrate_request(request, job->target, job->limit, error)) {
    requester.send(migrate::FrameType::reply, "error " + error);
    return;
  }
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!parse_socket_address(job->target, address, length)) {
    requester.send(migrate::FrameType::reply, "error bad target '" + job->target + "': expected IP:PORT");
    return;
  }
  ++counters_.exports_started;
  job->requester = &requester;
  job->started_ns = now_ns();
  job->deadline_ms = uv_now(node_.loop()) + config_.move_timeout_ms;
  job->candidates = table_.sessions().size();
  job->peer = std::make_unique<FrameStream>(
      node_.loop(),
      [this](FrameStream& s, migrate::Frame f) {
        if (export_ && export_->peer.get() == &s) on_session_result(*export_, f);
      },
      [this](FrameStream& s, const std::string& reason) {
        if (export_ && export_->peer.get() == &s) abandon_export("target " + export_->target + ": " + reason);
      });
  export_ = std::move(job);
  logger("migrate")->info("migrating sessions to {}", export_->target);
  // Sessions freeze only once the target answers: a dead target costs them nothing.
  if (!export_->peer->connect(reinterpret_cast<const sockaddr*>(&address),
                              [this](FrameStream&) { send_sessions(*export_); })) {
    abandon_export("cannot connect to " + export_->target);
  }
}

void MigrationService::send_sessions(Export& job) {
  for (MovableSession* session : table_.sessions()) {
    if (job.items.size() >= job.limit) break;
    tcp_pcb* pcb = session->pcb();
    // A parked session arrived here and its client has not followed yet: it cannot move on.
    std::string why;
    if (!session->movable()) {
      why = "its session is ending";
    } else if (auto movable = migrate::check_movable(pcb); !movable) {
      why = movable.error();
    } else if (guard_.is_parked(flow_of(pcb))) {
      why = "it arrived here and its client has not followed yet";
    }
    if (!why.empty()) {
      ++job.skipped;
      logger("migrate")->info("{}: stays here: {}", pcb != nullptr ? flow_of(pcb).to_string() : "?", why);
      continue;
    }
    uint64_t id = connection_id(pcb);
    auto young = young_.find(id);
    if (young != young_.end() && uv_now(node_.loop()) - young->second < config_.protect_older_than_ms) {
      // Long-lived policy: a young connection is not worth a move; its client reconnects.
      ++job.skipped;
      ++counters_.sessions_closed_young;
      logger("migrate")->info("{}: younger than {} ms: closed instead of moved", flow_of(pcb).to_string(),
                              config_.protect_older_than_ms);
      session->close();
      continue;
    }
    ChannelConnection* channel = channels_->channel_for(id);
    if (channel == nullptr) {
      ++job.skipped;
      ++counters_.sessions_without_channel;
      logger("migrate")->info("{}: stays here: its client has no control channel to be told by",
                              flow_of(pcb).to_string());
      continue;
    }
    uint64_t freeze_ns = now_ns();
    session->freeze();
    migrate::freeze_pcb(pcb);
    auto key = flow_of(pcb);
    guard_.silence(key);
    auto snapshot = migrate::capture_snapshot(pcb, session->received_unconsumed(), session->app_state());
    uint64_t captured_ns = now_ns();
    if (!snapshot) {
      logger("migrate")->warn("{}: cannot capture: {}", key.to_string(), snapshot.error());
      guard_.unsilence(key);
      migrate::thaw_pcb(pcb);
      session->thaw();
      ++job.failed;
      continue;
    }
    job.items.push_back({session, pcb, key, id, false});
    // One buffer from snapshot to socket: at a 4 MiB window every copy of it costs
    // milliseconds of the move (mostly first-touch page faults).
    std::vector<uint8_t> frame;
    std::string_view kind = session->kind();
    frame.reserve(8 + kind.size() + 256 + snapshot->unacked.size() + snapshot->unsent.size() +
                  snapshot->received.size() + snapshot->app_state.size());
    migrate::begin_frame(migrate::FrameType::session, frame);
    std::optional<crypto::HandoverToken> token;
    if (config_.channel.handover)
      token = job.tokens.try_emplace(channel, crypto::random_handover_token()).first->second;
    migrate::append_session_header(kind, token, frame);
    wire::encode_snapshot(*snapshot, frame);
    migrate::finish_frame(frame);
    uint64_t encoded_ns = now_ns();
    job.peer->send_frame(std::move(frame));
    logger("migrate")->debug(
        "{}: {} unacked + {} unsent bytes; connected {:.3f} ms after the request, "
        "captured in {:.3f} ms, encoded in {:.3f} ms, queued in {:.3f} ms",
        key.to_string(), snapshot->unacked.size(), snapshot->unsent.size(),
        static_cast<double>(freeze_ns - job.started_ns) / 1e6, static_cast<double>(captured_ns - freeze_ns) / 1e6,
        static_cast<double>(encoded_ns - captured_ns) / 1e6, static_cast<double>(now_ns() - encoded_ns) / 1e6);
  }
  if (job.items.empty()) finish_export();
}

void MigrationService::on_session_result(Export& job, const migrate::Frame& frame) {
  auto result =
      frame.type == migrate::FrameType::session_result ? migrate::decode_session_result(frame.payload) : std::nullopt;
  if (!result || job.results >= job.items.size()) {
    ++counters_.bad_frames;
    abandon_export("target sent an unexpected frame");
    return;
  }
  Export::Item& item = job.items[job.results++];
  item.settled = true;
  if (result->ok) {
    auto address = IpAddress::parse(result->text);
    if (address) job.new_address = *address;
    tcp_pcb* pcb = item.session->release_pcb();
    if (pcb != nullptr) migrate::discard_frozen_pcb(pcb);
    if (segment_mac_) segment_mac_->forget(item.key);
    table_.drop(item.session);
    item.session = nullptr;
    ++job.moved;
    ++counters_.sessions_exported;
  } else {
    // The connection goes on here, exactly where it was.
    if (job.first_error.empty()) job.first_error = result->text;
    guard_.unsilence(item.key);
    migrate::thaw_pcb(item.pcb);
    item.session->thaw();
    ++job.failed;
    ++counters_.sessions_export_failed;
  }
  if (job.results == job.items.size()) finish_export();
}

void MigrationService::abandon_export(const std::string& reason) {
  if (!export_) return;
  logger("migrate")->warn("migration to {} failed: {}", export_->target, reason);
  for (auto& item : export_->items) {
    if (item.settled) continue;
    item.settled = true;
    guard_.unsilence(item.key);
    migrate::thaw_pcb(item.pcb);
    item.session->thaw();
    ++export_->failed;
    ++counters_.sessions_export_failed;
  }
  if (export_->first_error.empty()) export_->first_error = reason;
  finish_export();
}

void MigrationService::finish_export() {
  std::unique_ptr<Export> job = std::move(export_);
  if (job->moved > 0) announce_moves(*job);
  double elapsed_ms = static_cast<double>(now_ns() - job->started_ns) / 1e6;
  std::string reply = job->failed == 0 && job->first_error.empty()
                          ? fmt::format("ok moved {} of {} sessions to {} in {:.3f} ms", job->moved,
                                        std::max(job->candidates, job->items.size() + job->skipped),
                                        job->moved > 0 ? job->new_address.to_string() : job->target, elapsed_ms)
                          : fmt::format("error moved {} of {} sessions to {} in {:.3f} ms; {} failed: {}", job->moved,
                                        std::max(job->candidates, job->items.size() + job->skipped), job->target,
                                        elapsed_ms, job->failed, job->first_error);
  logger("migrate")->info("{}", reply);
  if (job->requester != nullptr) job->requester->send(migrate::FrameType::reply, reply);
  if (job->peer) {
    FrameStream* peer = job->peer.release();
    node_.defer([peer] { delete peer; });  // may be inside its callback now
  }
  node_.kick();
}

// ------------------------------------------------------------------ new server: import

void MigrationService::import_session(FrameStream& stream, const migrate::Frame& frame) {
  auto refuse = [&](const std::string& reason) {
    ++counters_.imports_refused;
    logger("migrate")->info("refused an incoming session: {}", reason);
    stream.send(migrate::FrameType::session_result, migrate::encode_session_result(false, reason));
  };
  uint64_t started_ns = now_ns();
  auto payload = migrate::decode_session_payload(frame.payload);
  if (!payload) return refuse("malformed session frame");
  auto snapshot = wire::decode_snapshot(payload->snapshot);
  if (!snapshot) return refuse(std::string("bad snapshot: ") + wire::snapshot_error_name(snapshot.error()));
  const IpAddress& local = own_address(snapshot->remote_address.version);
  if (local.version != snapshot->remote_address.version) return refuse("no address of the client's family here");
  auto pcb = migrate::import_pcb(*snapshot, local);
  if (!pcb) return refuse(pcb.error());
  // Parked first: nothing the new session sends while it starts may leave before the
  // client is on the new path (the client would answer it with RST).
  auto key = flow_of(*pcb);
  // Once the client arrived, its registration (which may have come first) can be claimed.
  guard_.park(key, *pcb, [this] {
    if (!shut_down_) channels_->claim_pending();
  });
  std::string error;
  auto session = table_.kinds().make(payload->kind, *pcb, std::move(snapshot->received),
                                      snapshot->app_state, table_.finished_callback(), error);
  if (!session) {
    guard_.forget_parked(key);
    migrate::discard_imported_pcb(*pcb);
    return refuse(error);
  }
  parked_imports_[session.get()] = uv_now(node_.loop()) + config_.parked_timeout_ms;
  if (payload->handover_token && snapshot->connection_id != 0)
    responder_.expect(snapshot->connection_id, *payload->handover_token, key, snapshot->send.snd_nxt);
  table_.adopt(std::move(session));
  ++counters_.sessions_imported;
  logger("migrate")->debug("imported a {} session in {:.3f} ms", payload->kind,
                           static_cast<double>(now_ns() - started_ns) / 1e6);
  stream.send(migrate::FrameType::session_result, migrate::encode_session_result(true, local.to_string()));
}

tcp_pcb* MigrationService::rebind_parked(const FlowKey& parked, const IpAddress& client, uint16_t port) {
  FlowKey moved = parked;
  moved.remote = client;
  moved.remote_port = port;
  tcp_pcb* pcb = guard_.repark(parked, moved);
  if (pcb == nullptr || moved == parked) return pcb;
  logger("migrate")->debug("{}: the client's NAT presents it as {}", parked.to_string(),
                           endpoint_string(client, port));
  return pcb;
}

void MigrationService::on_housekeeping() {
  uint64_t now = uv_now(node_.loop());
  responder_.expire();
  channels_->claim_pending();
  if (segment_mac_) segment_mac_->prune();
  // Connections that grew old (or ended) need no entry: no entry means old.
  std::erase_if(young_, [&](const auto& entry) {
    return now - entry.second >= config_.protect_older_than_ms || find_pcb_by_connection_id(entry.first) == nullptr;
  });
  if (export_ && now >= export_->deadline_ms) {
    ++counters_.moves_timed_out;
    abandon_export("no complete answer within " + std::to_string(config_.move_timeout_ms / 1000) + " s");
  }
  if (parked_imports_.empty()) return;
  auto live = table_.sessions();  // a parked session may have ended on its own meanwhile
  std::set<MovableSession*> alive(live.begin(), live.end());
  for (auto it = parked_imports_.begin(); it != parked_imports_.end();) {
    MovableSession* session = it->first;
    if (alive.count(session) == 0) {
      it = parked_imports_.erase(it);
      continue;
    }
    tcp_pcb* pcb = session->pcb();
    bool still_parked = pcb != nullptr && guard_.is_parked(flow_of(pcb));
    if (!still_parked) {  // the client arrived (or the session ended): nothing to watch
      it = parked_imports_.erase(it);
      continue;
    }
    if (now < it->second) {
      ++it;
      continue;
    }
    // The client never came: drop the connection here without a packet (it may live on
    // at the old server, which resumed it).
    ++counters_.parked_expired;
    logger("migrate")->info("{}: the client never arrived; dropping the imported session",
                            flow_of(pcb).to_string());
    guard_.forget_parked(flow_of(pcb));
    responder_.forget(connection_id(pcb));
    session->freeze();
    if (tcp_pcb* released = session->release_pcb()) migrate::discard_imported_pcb(released);
    table_.drop(session);
    it = parked_imports_.erase(it);
  }
}

// ------------------------------------------------------------------ announcing moves

void MigrationService::announce_moves(const Export& job) {
  // One ACM per client channel and old endpoint, naming the moved connections by id.
  std::map<std::tuple<ChannelConnection*, std::string, uint16_t>, control::AddressChange> acms;
  for (const auto& item : job.items) {
    if (item.session != nullptr) continue;  // not moved
    ChannelConnection* channel = channels_->channel_for(item.connection_id);
    if (channel == nullptr) {
      ++counters_.acms_undeliverable;
      logger("migrate")->warn("{}: moved, but its client's control channel closed meanwhile", item.key.to_string());
      continue;
    }
    auto& acm = acms[{channel, item.key.local.to_string(), item.key.local_port}];
    if (acm.connection_ids.empty()) {
      auto token = job.tokens.find(channel);
      if (token != job.tokens.end()) acm.handover_token = token->second;
      acm.scope = control::AcmScope::connections;
      acm.old_address = item.key.local;
      acm.old_port = item.key.local_port;
      acm.new_address = job.new_address.version == item.key.local.version ? job.new_address : item.key.local;
      acm.new_port = item.key.local_port;
    }
    acm.connection_ids.push_back(item.connection_id);
    if (acm.connection_ids.size() == control::max_connection_ids) {
      if (!channels_->send_acm(*channel, std::move(acm))) ++counters_.acms_undeliverable;
      acms.erase({channel, item.key.local.to_string(), item.key.local_port});
    }
  }
  std::map<ChannelConnection*, size_t> endpoints_of;
  for (const auto& [where, acm] : acms) ++endpoints_of[std::get<0>(where)];
  for (auto& [where, acm] : acms) {
    ChannelConnection* channel = std::get<0>(where);
    // Every id here is registered on this channel (channel_for found it there). When they
    // are all of its ids, from one endpoint, the global form says it in a few bytes,
    // however many connections there are.
    const std::set<uint64_t>* registered = channels_->registered_ids(channel);
    if (endpoints_of[channel] == 1 && registered != nullptr && registered->size() == acm.connection_ids.size()) {
      acm.scope = control::AcmScope::global;
      acm.connection_ids.clear();
      ++counters_.acms_global;
    }
    if (!channels_->send_acm(*channel, std::move(acm))) ++counters_.acms_undeliverable;
  }
}

std::string MigrationService::status_json() const {
  const auto& c = counters_;
  const auto& g = guard_.counters();
  const auto& k = channels_->counters();
  const auto& h = responder_.counters();
  return fmt::format(
      "{{\"sessions\":{},\"exports_started\":{},\"sessions_exported\":{},\"sessions_export_failed\":{},"
      "\"sessions_imported\":{},\"imports_refused\":{},\"bad_frames\":{},\"sessions_without_channel\":{},"
      "\"acms_undeliverable\":{},\"acms_global\":{},\"sessions_closed_young\":{},\"silenced_input_drops\":{},"
      "\"parked_output_drops\":{},\"unparked\":{},\"parked\":{},\"moves_timed_out\":{},\"parked_expired\":{},"
      "\"channels\":{},\"channels_accepted\":{},\"channels_established\":{},\"channels_failed\":{},"
      "\"registrations\":{},\"registrations_refused\":{},\"channel_frames_dropped\":{},"
      "\"acms_sent\":{},\"acms_applied\":{},\"acms_refused\":{},"
      "\"handover_syns_accepted\":{},\"handover_syns_repeated\":{},\"handover_syns_forged\":{},"
      "\"handover_syns_replayed\":{},\"handover_syns_unknown\":{},\"handover_syns_malformed\":{},"
      "\"handover_syns_refused\":{},\"handover_synacks_sent\":{}}}",
      const_cast<SessionTable&>(table_).sessions().size(), c.exports_started, c.sessions_exported,
      c.sessions_export_failed, c.sessions_imported, c.imports_refused, c.bad_frames, c.sessions_without_channel,
      c.acms_undeliverable, c.acms_global, c.sessions_closed_young, g.silenced_input_drops, g.parked_output_drops,
      g.unparked, guard_.parked_count(), c.moves_timed_out, c.parked_expired, channels_->channel_count(),
      k.channels_accepted, k.channels_established, k.channels_failed, k.registrations, k.registrations_refused,
      k.frames_dropped, k.acms_sent, k.acms_applied, k.acms_refused, h.syns_accepted, h.syns_repeated, h.syns_forged,
      h.syns_replayed, h.syns_unknown, h.syns_malformed, h.syns_refused, h.synacks_sent);
}

}  // namespace roam
