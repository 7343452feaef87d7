#include "apps/roam_follow.hpp"

#include "base/clock.hpp"
#include "base/log.hpp"

namespace roam {

RoamFollow::RoamFollow(CounterRegistry& registry) {
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
  registry.add_gauge("roam", "roam_granted_until", [this] { return tracker_.granted_until().value_or(0); });
}

void RoamFollow::on_update(const IpAddress& server, const control::RoamUpdate& update) {
  auto now = static_cast<int64_t>(unix_ms());
  auto verdict = tracker_.apply(update, now);
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

}  // namespace roam
