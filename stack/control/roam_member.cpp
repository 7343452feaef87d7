#include "stack/control/roam_member.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "crypto/roam_keys.hpp"

namespace roam::control {

namespace {

crypto::EpochRule rule_of(const RoamMemberConfig& config) {
  crypto::EpochRule rule;
  rule.unit_ms = config.unit_ms;
  if (config.m != 0) rule.changes.push_back({0, config.m});
  return rule;
}

}  // namespace

RoamMember::RoamMember(crypto::HashChain chain, RoamMemberConfig config)
    : config_(std::move(config)),
      schedule_(std::move(chain), rule_of(config_), static_cast<uint32_t>(config_.servers.size()), 1,
                config_.start_ms) {
  if (config_.self >= config_.servers.size()) throw std::invalid_argument("roam pool: this member is not in servers");
  if (config_.delta_ms < 0 || config_.gamma_ms < 0 ||
      config_.delta_ms + config_.gamma_ms >= static_cast<int64_t>(config_.unit_ms))
    throw std::invalid_argument("roam pool: delta + gamma must be below the epoch unit");
}

void RoamMember::refresh(int64_t now_ms) {
  if (now_ms >= valid_from_ && now_ms < valid_until_) return;
  const int64_t delta = config_.delta_ms;
  const int64_t late = config_.delta_ms + config_.gamma_ms;
  accepts_ = schedule_.accepts(config_.self, now_ms, delta, config_.gamma_ms);
  auto w = schedule_.window_at(now_ms);
  window_ = w;
  active_ = w && w->server == config_.self;
  if (w && w->epoch != epoch_) {
    if (epoch_ != 0) ++counters_.epoch_changes;
    epoch_ = w->epoch;
  }
  // Inside an epoch the answer can change only at start + delta + gamma (the previous
  // server stops) and at end - delta (the next one starts); outside the schedule, at
  // first start - delta and at last end + delta + gamma. Cache until the next of these.
  if (w) {
    if (now_ms < w->start_ms + late) {
      valid_from_ = w->start_ms;
      valid_until_ = std::min(w->start_ms + late, w->end_ms - delta);
    } else if (now_ms < w->end_ms - delta) {
      valid_from_ = w->start_ms + late;
      valid_until_ = w->end_ms - delta;
    } else {
      valid_from_ = std::max(w->end_ms - delta, w->start_ms + late);
      valid_until_ = w->end_ms;
    }
  } else {
    // Rare (before the pool starts or after its chain ends): no caching.
    valid_from_ = now_ms;
    valid_until_ = now_ms + 1;
  }
}

std::optional<crypto::EpochWindow> RoamMember::window_at(int64_t now_ms) {
  if (window_ && now_ms >= window_->start_ms && now_ms < window_->end_ms) return window_;
  refresh(now_ms);
  return window_;
}

bool RoamMember::accepts(int64_t now_ms) {
  refresh(now_ms);
  return accepts_;
}

bool RoamMember::active(int64_t now_ms) {
  refresh(now_ms);
  return active_;
}

bool RoamMember::admit(int64_t now_ms) {
  if (accepts(now_ms)) {
    ++counters_.admitted;
    return true;
  }
  ++counters_.dropped_inactive;
  return false;
}

std::optional<RoamUpdate> RoamMember::update_for_client(int64_t now_ms, bool with_pool) {
  auto w = window_at(now_ms);
  if (!w) return std::nullopt;
  RoamUpdate u;
  u.issued_at_ms = static_cast<uint64_t>(now_ms);
  if (with_pool) u.pool = RoamPoolItem{config_.unit_ms, config_.m, config_.servers};
  uint64_t last = schedule_.last_epoch();
  uint64_t reference = std::min(w->epoch + 1, last);
  int64_t reference_start = reference == w->epoch ? w->start_ms : w->end_ms;
  u.position = RoamPositionItem{static_cast<uint32_t>(w->epoch), static_cast<uint32_t>(reference),
                                reference_start - now_ms};
  uint64_t t = std::min<uint64_t>(w->epoch + config_.grant_epochs, last);
  u.key = RoamKeyItem{static_cast<uint32_t>(t), schedule_.chain().key(t)};
  return u;
}

std::string RoamMember::describe(int64_t now_ms) {
  auto w = window_at(now_ms);
  if (!w) {
    return now_ms < config_.start_ms ? "roam pool: not started" : "roam pool: chain exhausted";
  }
  bool is_active = w->server == config_.self;
  bool accepting = accepts(now_ms);
  std::string role = is_active ? "active" : accepting ? "transitional" : "standby";
  return "roam epoch " + std::to_string(w->epoch) + " (" + std::to_string(w->end_ms - now_ms) +
         " ms left): active member " + std::to_string(w->server) + ", this member " + std::to_string(config_.self) +
         " " + role;
}

}  // namespace roam::control
