#include "apps/roam_pool_service.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/cli.hpp"
#include "base/clock.hpp"
#include "base/log.hpp"
#include "crypto/identity_key.hpp"

namespace roam {

namespace {

// The roam's move starts within one tick of the boundary: short against the transitional
// interval (delta + gamma, 300 ms by default); a tick costs a comparison (RoamMember caches).
constexpr uint64_t tick_ms = 20;

control::RoamMemberConfig member_config(const RoamPoolFile& file, std::optional<uint32_t> unit_ms,
                                        const std::vector<IpAddress>& own_addresses) {
  control::RoamMemberConfig config;
  config.servers = file.members;
  std::optional<uint32_t> unit = unit_ms ? unit_ms : file.unit_ms;
  if (!unit) throw ConfigError("--roam-pool: no epoch length (--roam-epoch SECONDS or 'epoch' in the file)");
  config.unit_ms = *unit;
  config.m = file.m;
  config.start_ms = *file.start_ms;
  config.delta_ms = file.delta_ms;
  config.gamma_ms = file.gamma_ms;
  config.grant_epochs = file.grant_epochs;
  std::optional<uint32_t> self;
  for (uint32_t i = 0; i < file.members.size(); ++i)
    for (const auto& own : own_addresses)
      if (file.members[i].address == own) self = i;
  if (!self) throw ConfigError("--roam-pool: this server's address is not a member");
  config.self = *self;
  if (config.delta_ms + config.gamma_ms >= static_cast<int64_t>(config.unit_ms))
    throw ConfigError("--roam-pool: delta-ms + gamma-ms must be below the epoch length");
  return config;
}

}  // namespace

RoamPoolService::RoamPoolService(Node& node, const std::string& pool_path, std::optional<uint32_t> unit_ms,
                                 const std::vector<IpAddress>& own_addresses, RoamDrop drop,
                                 CounterRegistry& registry, Parts parts)
    : node_(node), drop_(drop), parts_(parts), plan_(0) {
  std::ifstream in(pool_path);
  if (!in) throw ConfigError("--roam-pool: cannot read '" + pool_path + "'");
  std::stringstream text;
  text << in.rdbuf();
  auto file = parse_roam_pool_file(text.str());
  if (!file) throw ConfigError("--roam-pool " + pool_path + ": " + file.error());
  std::filesystem::path seed_path(file->seed_file);
  if (seed_path.is_relative()) seed_path = std::filesystem::path(pool_path).parent_path() / seed_path;
  auto seed = crypto::load_secret_file(seed_path.string());
  if (!seed)
    throw ConfigError("--roam-pool: chain seed '" + seed_path.string() + "': " + crypto::key_error_name(seed.error()));
  crypto::ChainKey top;
  std::memcpy(top.data(), seed->data(), top.size());
  crypto::HashChain chain(top, file->length);
  sodium_memzero(top.data(), top.size());
  member_ = std::make_unique<control::RoamMember>(std::move(chain), member_config(*file, unit_ms, own_addresses));
  update_interval_ms_ = uint64_t{file->update_seconds} * 1000;
  // A client on a channel must never run out of schedule between two updates: its key
  // reaches grant_epochs epochs ahead, each at least one unit long. Send at least twice
  // in that time, whatever update-seconds says (PROTOCOL.md 13.5).
  const uint64_t grant_ms = uint64_t{file->grant_epochs} * member_->config().unit_ms;
  update_interval_ms_ = std::clamp<uint64_t>(grant_ms / 2, 100, std::max<uint64_t>(update_interval_ms_, 100));
  controls_ = file->member_controls;
  plan_ = RoamMovePlan(member_->config().self);
  if (parts_.channels != nullptr) {
    parts_.channels->set_roam_update_source([this](bool first) -> Result<control::RoamUpdate, std::string> {
      const auto now = static_cast<int64_t>(unix_ms());
      if (auto update = member_->update_for_client(now, first)) return std::move(*update);
      return unexpected(member_->describe(now));  // "roam pool: not started" / "...: chain exhausted"
    });
  }
  last_update_ms_ = uv_now(node_.loop());

  const auto& c = member_->counters();
  registry.add("roam", "roam_dropped_standby", &c.dropped_inactive);
  registry.add("roam", "roam_admitted", &c.admitted);
  registry.add("roam", "roam_epoch_changes", &c.epoch_changes);
  registry.add_gauge("roam", "roam_epoch", [this] {
    auto w = member_->window_at(static_cast<int64_t>(unix_ms()));
    return w ? w->epoch : 0;
  });
  registry.add_gauge("roam", "roam_active", [this] { return member_->active(static_cast<int64_t>(unix_ms())) ? 1u : 0u; });
  registry.add_gauge("roam", "roam_accepting",
                     [this] { return member_->accepts(static_cast<int64_t>(unix_ms())) ? 1u : 0u; });
  registry.add_gauge("roam", "roam_member", [this] { return uint64_t{member_->config().self}; });
  registry.add("roam", "roam_moves_started", &moves_.started);
  registry.add("roam", "roam_moves_failed", &moves_.failed);
  registry.add("roam", "roam_moves_not_started", &moves_.not_started);
  registry.add("roam", "roam_members_avoided", &moves_.avoided);
  registry.add("roam", "roam_sessions_moved", &moves_.sessions_moved);

  node_.add_input_filter(InputStage::defense, this);
  if (uv_timer_init(node_.loop(), timer_.get()) == 0) {
    timer_.mark_initialized();
    timer_.get()->data = this;
    uv_timer_start(timer_.get(), &RoamPoolService::on_timer, 0, tick_ms);
    uv_unref(timer_.base());  // the timer alone keeps no loop running
  }
  logger("roam")->info("roam pool {}: member {} of {}, epoch {} ms, m {}, delta {} ms, gamma {} ms, drop {}",
                       pool_path, member_->config().self, member_->config().servers.size(), member_->config().unit_ms,
                       member_->config().m, member_->config().delta_ms, member_->config().gamma_ms,
                       drop_ == RoamDrop::all ? "all" : "syn");
}

RoamPoolService::~RoamPoolService() {
  node_.remove_input_filter(this);
  if (parts_.channels != nullptr) parts_.channels->set_roam_update_source(nullptr);
}

FilterVerdict RoamPoolService::on_input(const InboundPacket& packet) {
  // The channel port: a client learns the schedule (ROAM_UPDATE) from any member it knows,
  // and follows a move over it; the channel is authenticated (PROTOCOL.md 13.6).
  if (packet.tcp && parts_.channel_port != 0 && packet.tcp->flow.local_port == parts_.channel_port)
    return FilterVerdict::pass;
  // The NAT handover's synthetic segments (PROTOCOL.md 6) open no connection: the handover
  // stage right after authenticates them by their tag and drops the rest. A standby member
  // gets them for a connection resumed here from a checkpoint (14.5: the takeover target
  // is often the next epoch's member); dropping them left the client's NAT closed.
  if (packet.tcp && packet.tcp->handover_option) return FilterVerdict::pass;
  if (drop_ == RoamDrop::syn) {
    // Only a new connection's SYN is decided here: established flows keep going.
    if (!packet.tcp) return FilterVerdict::pass;
    const auto& segment = packet.tcp->segment;
    if (!segment.has(wire::TcpSegmentView::SYN) || segment.has(wire::TcpSegmentView::ACK)) return FilterVerdict::pass;
  }
  return member_->admit(static_cast<int64_t>(unix_ms())) ? FilterVerdict::pass : FilterVerdict::drop;
}

void RoamPoolService::resumed_away_from(const IpAddress& left) {
  const auto& servers = member_->config().servers;
  for (uint32_t i = 0; i < servers.size(); ++i) {
    if (!(servers[i].address == left) || i == member_->config().self) continue;
    plan_.avoid(i, uv_now(node_.loop()));
    ++moves_.avoided;
    logger("roam")->info("a session was resumed here away from member {} ({}): no moves to it for {} s", i,
                         left.to_string(), RoamMovePlan::avoid_ms / 1000);
    return;
  }
}

void RoamPoolService::on_timer(uv_timer_t* timer) noexcept { static_cast<RoamPoolService*>(timer->data)->tick(); }

void RoamPoolService::tick() {
  if (parts_.channels != nullptr && uv_now(node_.loop()) - last_update_ms_ >= update_interval_ms_) {
    last_update_ms_ = uv_now(node_.loop());
    parts_.channels->send_roam_updates();
  }
  auto now = static_cast<int64_t>(unix_ms());
  auto window = member_->window_at(now);
  bool active = member_->active(now);
  bool accepting = member_->accepts(now);
  uint64_t epoch = window ? window->epoch : 0;
  std::string role = active ? "active" : accepting ? "transitional" : "standby";
  if (epoch != epoch_ || role != role_) {
    epoch_ = epoch;
    role_ = role;
    logger("roam")->info("{}", member_->describe(now));
  }
  if (window && parts_.migration != nullptr && parts_.table != nullptr) {
    RoamMoveView view{uv_now(node_.loop()), epoch, window->server, parts_.table->session_count(),
                      parts_.migration->moving()};
    if (auto target = plan_.next(view)) move_to_active(epoch, *target);
  }
}

void RoamPoolService::move_to_active(uint64_t epoch, uint32_t active) {
  const std::string& control = active < controls_.size() ? controls_[active] : std::string();
  size_t offered = parts_.table->session_count();
  std::string error;
  bool started = false;
  if (control.empty()) {
    error = "member " + std::to_string(active) + " has no control port in the pool file";
  } else {
    MoveRequest request;
    request.target = control;
    started = parts_.migration->move_sessions(
        std::move(request),
        [this, alive = std::weak_ptr<bool>(alive_), epoch, active](const migrate::ExportReport& report) {
          if (alive.expired()) return;
          moves_.sessions_moved += report.moved;
          if (!report.ok()) ++moves_.failed;
          plan_.finished(uv_now(node_.loop()), report.candidates, report.candidates - report.moved, !report.ok());
          if (report.ok())
            logger("roam")->info("roam epoch {}: moved {} of {} sessions to member {} in {:.3f} ms", epoch,
                                 report.moved, report.candidates, active, report.elapsed_ms);
          else
            logger("roam")->warn("roam epoch {}: moved {} of {} sessions to member {}; {} failed and stay here: {}",
                                 epoch, report.moved, report.candidates, active, report.failed, report.error);
        },
        error);
  }
  if (started) {
    ++moves_.started;
    return;
  }
  ++moves_.not_started;
  plan_.finished(uv_now(node_.loop()), offered, offered, true);
  if (error != last_move_error_) {
    last_move_error_ = error;
    logger("roam")->warn("roam epoch {}: cannot move {} sessions to member {}: {} (they stay; tried again)", epoch,
                         offered, active, error);
  }
}

}  // namespace roam
