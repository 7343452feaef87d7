#include "apps/roam_follow.hpp"

#include <algorithm>

#include "base/clock.hpp"
#include "base/log.hpp"

namespace roam {

RoamFollow::RoamFollow(CounterRegistry& registry, uv_loop_t* loop) : loop_(loop) {
  if (loop_ != nullptr && uv_timer_init(loop_, timer_.get()) == 0) {
    timer_.mark_initialized();
    timer_.get()->data = this;
  }
  const auto& c = tracker_.counters();
  registry.add("roam", "roam_updates_applied", &c.applied);
  registry.add("roam", "roam_updates_replayed", &c.replayed);
  registry.add("roam", "roam_updates_stale", &c.stale);
  registry.add("roam", "roam_updates_forged", &c.forged);
  registry.add("roam", "roam_updates_too_far", &c.too_far);
  registry.add("roam", "roam_updates_inconsistent", &c.inconsistent);
  registry.add("roam", "roam_keys_extended", &c.keys_extended);
  registry.add("roam", "roam_dials_redirected", &dials_redirected_);
  registry.add("roam", "roam_dials_unscheduled", &dials_unscheduled_);
  registry.add("roam", "roam_updates_unavailable", &updates_unavailable_);
  registry.add_gauge("roam", "roam_granted_until", [this] { return tracker_.granted_until().value_or(0); });
}

RoamFollow::~RoamFollow() { close(); }

void RoamFollow::close() {
  waiters_.clear();
  if (timer_.valid()) uv_timer_stop(timer_.get());
}

void RoamFollow::when_scheduled(const IpAddress& server, bool announced, std::function<void()> then) {
  bool silent = std::find(silent_servers_.begin(), silent_servers_.end(), server) != silent_servers_.end();
  // Not only before a first pool: a client whose key ran out (it was away longer than its
  // grant) hears the current schedule on the new channel just as well (PROTOCOL.md 13.4).
  bool wait = announced && !scheduled_now() && !silent;
  if (!timer_.valid()) {
    if (wait) logger("roam")->debug("no loop to wait for a first roam update: dialing {} as configured", server.to_string());
    then();  // only without a loop (tests): nothing to defer with
    return;
  }
  waiters_.push_back(Waiter{server, uv_now(loop_) + (wait ? first_update_wait_ms : 0), wait, std::move(then)});
  // A waiting carrier does not push the timer back: carriers arriving every few ms would
  // otherwise keep every wait from ever ending.
  if (!wait || uv_is_active(reinterpret_cast<uv_handle_t*>(timer_.get())) == 0)
    uv_timer_start(timer_.get(), &RoamFollow::on_timer, wait ? 20 : 0, 20);
}

void RoamFollow::on_timer(uv_timer_t* timer) noexcept {
  auto* self = static_cast<RoamFollow*>(timer->data);
  self->run_waiters(self->scheduled_now());
}

bool RoamFollow::scheduled_now() {
  return tracker_.pool() && tracker_.window_at(static_cast<int64_t>(unix_ms())).has_value();
}

void RoamFollow::on_unavailable(const IpAddress& server, const std::string& why) {
  ++updates_unavailable_;
  logger("roam")->warn("roam pool member {} has no schedule to give: {}; its carriers dial as configured",
                       server.to_string(), why);
  if (std::find(silent_servers_.begin(), silent_servers_.end(), server) == silent_servers_.end())
    silent_servers_.push_back(server);
  bool any = false;
  for (auto& w : waiters_) {
    if (!(w.server == server)) continue;
    w.deadline_ms = 0;
    any = true;
  }
  if (any && timer_.valid()) uv_timer_start(timer_.get(), &RoamFollow::on_timer, 0, 20);
}

void RoamFollow::run_waiters(bool all) {
  uint64_t now = uv_now(loop_);
  std::vector<Waiter> due;
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (all || now >= it->deadline_ms) {
      if (!all && it->waits) {
        if (std::find(silent_servers_.begin(), silent_servers_.end(), it->server) == silent_servers_.end())
          silent_servers_.push_back(it->server);
      }
      due.push_back(std::move(*it));
      it = waiters_.erase(it);
    } else {
      ++it;
    }
  }
  if (waiters_.empty()) uv_timer_stop(timer_.get());
  for (auto& w : due) w.then();  // may add waiters: they were taken out first
}

void RoamFollow::on_update(const IpAddress& server, const control::RoamUpdate& update) {
  auto now = static_cast<int64_t>(unix_ms());
  auto verdict = tracker_.apply(update, now);
  // The schedule covers now: the carriers waiting for it go (from the timer, not from here).
  if (!waiters_.empty() && scheduled_now() && timer_.valid()) uv_timer_start(timer_.get(), &RoamFollow::on_timer, 0, 20);
  if (verdict != control::RoamVerdict::applied) {
    uint64_t suppressed = 0;
    if (refusal_log_.allow(suppressed))
      logger("roam")->warn("roam update from {} refused: {} ({} more not logged)", server.to_string(),
                           control::roam_verdict_name(verdict), suppressed);
    return;
  }
  auto window = tracker_.window_at(now);
  auto active = tracker_.active_server(now);
  auto granted = tracker_.granted_until();
  if (active == last_active_ && granted == last_granted_) return;
  bool first = !last_granted_;
  last_active_ = active;
  last_granted_ = granted;
  if (!window || !active) {
    logger("roam")->info("roam update from {}: no epoch covers now (schedule known until epoch {})",
                         server.to_string(), granted.value_or(0));
    return;
  }
  auto line = fmt::format("roam {} from {}: epoch {} ({} ms left), active server {}:{}, schedule known until epoch {}",
                          first ? "schedule" : "update", server.to_string(), window->epoch, window->end_ms - now,
                          active->address.to_string(), active->port, granted.value_or(0));
  if (first)
    logger("roam")->info("{}", line);
  else
    logger("roam")->debug("{}", line);
}

std::optional<control::RoamServer> RoamFollow::dial_target(const IpAddress& server, uint16_t port, bool count) {
  const auto& pool = tracker_.pool();
  if (!pool) return std::nullopt;
  const control::RoamServer* member = nullptr;
  for (const auto& s : pool->servers)
    if (s.address == server && (member == nullptr || s.port == port)) member = &s;
  if (member == nullptr) return std::nullopt;
  auto active = tracker_.active_server(static_cast<int64_t>(unix_ms()));
  if (!active) {
    if (count) ++dials_unscheduled_;
    return std::nullopt;
  }
  if (count) ++dials_redirected_;
  if (member->port != port) active->port = port;  // another service on the member's address
  return active;
}

std::optional<RoamFollow::TakeoverTarget> RoamFollow::takeover_target(const IpAddress& dead,
                                                                      std::span<const IpAddress> avoid) {
  const auto& pool = tracker_.pool();
  if (!pool) return std::nullopt;
  bool member = false;
  for (const auto& s : pool->servers) member = member || s.address == dead;
  if (!member) return std::nullopt;
  auto at = static_cast<int64_t>(unix_ms());
  for (int i = 0; i < takeover_epochs; ++i) {
    auto window = tracker_.window_at(at);
    auto active = tracker_.active_server(at);
    if (!window || !active) return std::nullopt;  // past E_t: the schedule says no more
    const bool avoided = std::find(avoid.begin(), avoid.end(), active->address) != avoid.end();
    if (!(active->address == dead) && !avoided) return TakeoverTarget{*active, i > 0};
    at = window->end_ms;
  }
  return std::nullopt;
}

}  // namespace roam
