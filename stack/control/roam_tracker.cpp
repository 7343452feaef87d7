#include "stack/control/roam_tracker.hpp"

#include <algorithm>

#include "crypto/sodium.hpp"

namespace roam::control {

const char* roam_verdict_name(RoamVerdict verdict) {
  switch (verdict) {
    case RoamVerdict::applied:
      return "applied";
    case RoamVerdict::replayed:
      return "replayed";
    case RoamVerdict::stale:
      return "stale";
    case RoamVerdict::forged:
      return "forged";
    case RoamVerdict::too_far:
      return "too_far";
    case RoamVerdict::inconsistent:
      return "inconsistent";
  }
  return "unknown";
}

RoamTracker::RoamTracker(std::optional<TrustedChainKey> trusted, RoamTrackerLimits limits)
    : limits_(limits), held_(trusted) {}

RoamVerdict RoamTracker::refuse(RoamVerdict verdict) {
  switch (verdict) {
    case RoamVerdict::replayed:
      ++counters_.replayed;
      break;
    case RoamVerdict::stale:
      ++counters_.stale;
      break;
    case RoamVerdict::forged:
      ++counters_.forged;
      break;
    case RoamVerdict::too_far:
      ++counters_.too_far;
      break;
    case RoamVerdict::inconsistent:
      ++counters_.inconsistent;
      break;
    case RoamVerdict::applied:
      break;
  }
  return verdict;
}

RoamVerdict RoamTracker::apply(const RoamUpdate& update, int64_t now_ms) {
  // 1. Freshness of the message itself.
  if (last_issued_ms_ && update.issued_at_ms <= *last_issued_ms_) return refuse(RoamVerdict::replayed);
  auto issued = static_cast<int64_t>(std::min<uint64_t>(update.issued_at_ms, INT64_MAX));
  if (issued < now_ms - limits_.max_age_ms || issued > now_ms + limits_.max_age_ms) return refuse(RoamVerdict::stale);

  // 2. The key: it must hash down to the key held (or become the first trusted one).
  std::optional<TrustedChainKey> key = held_;
  bool new_key = false;
  if (update.key) {
    if (held_) {
      auto check = crypto::verify_chain_key(update.key->key, update.key->index, held_->key, held_->index,
                                            limits_.max_key_steps);
      if (check == crypto::ChainCheck::older) return refuse(RoamVerdict::stale);
      if (check == crypto::ChainCheck::too_far) return refuse(RoamVerdict::too_far);
      if (check == crypto::ChainCheck::forged) return refuse(RoamVerdict::forged);
    }
    new_key = !held_ || update.key->index != held_->index || !schedule_;
    key = TrustedChainKey{update.key->index, update.key->key};
  }

  // 3. What the schedule would be after this update.
  const RoamPoolItem* pool = update.pool ? &*update.pool : pool_ ? &*pool_ : nullptr;
  std::optional<uint64_t> current = current_epoch_;
  uint64_t reference = 0;
  int64_t reference_start = 0;
  if (update.position) {
    const auto& p = *update.position;
    if (current_epoch_ && p.current < *current_epoch_) return refuse(RoamVerdict::stale);
    if (!key || !pool) return refuse(RoamVerdict::inconsistent);
    if (p.current > key->index || p.reference > key->index) return refuse(RoamVerdict::inconsistent);
    uint32_t gap = p.current > p.reference ? p.current - p.reference : p.reference - p.current;
    if (gap > limits_.max_position_gap) return refuse(RoamVerdict::inconsistent);
    current = p.current;
    reference = p.reference;
    // The paper's T_u + N_j, with T_u the local receive time.
    reference_start = now_ms + p.until_reference_ms;
  }
  crypto::EpochRule rule = rule_;
  if (update.pool) {
    // The pool's own m holds from epoch 0; later changes (bits items) stay.
    rule.unit_ms = update.pool->unit_ms;
    if (rule.changes.empty() || rule.changes.front().from_epoch != 0)
      rule.changes.insert(rule.changes.begin(), crypto::EpochBitsChange{0, update.pool->m});
    else
      rule.changes.front().m = update.pool->m;
  }
  if (update.bits) {
    if (!current || update.bits->from_epoch <= *current) return refuse(RoamVerdict::inconsistent);
    rule.set_from(update.bits->from_epoch, update.bits->m);
  }
  // The chain to keep: from the lower of r and j up to t.
  uint64_t bottom = 0;
  if (current) {
    bottom = update.position ? std::min<uint64_t>(*current, reference) : *current;
    if (key && key->index >= bottom && key->index - bottom > limits_.max_held_epochs) return refuse(RoamVerdict::too_far);
    if (key && key->index < bottom) return refuse(RoamVerdict::inconsistent);
  }

  // 4. Every check passed: apply.
  if (update.key && held_ && update.key->index > held_->index) ++counters_.keys_extended;
  bool rebuild = new_key || update.position || update.pool || update.bits;
  held_ = key;
  if (update.pool) pool_ = *update.pool;
  rule_ = rule;
  current_epoch_ = current;
  last_issued_ms_ = update.issued_at_ms;
  if (rebuild && held_ && pool_ && current_epoch_) {
    int64_t start;
    crypto::HashChain chain(held_->key, held_->index, bottom);
    if (update.position) {
      start = crypto::RoamSchedule::start_of(chain, rule_, reference, reference_start, *current_epoch_);
    } else if (schedule_ && schedule_->first_epoch() <= *current_epoch_) {
      start = schedule_->window(std::max(*current_epoch_, schedule_->first_epoch())).start_ms;
    } else {
      start = now_ms;  // unreachable in practice: a current epoch always came with a position
    }
    auto servers = static_cast<uint32_t>(pool_->servers.size());
    schedule_.emplace(std::move(chain), rule_, servers, *current_epoch_, start);
  }
  ++counters_.applied;
  return RoamVerdict::applied;
}

std::optional<crypto::EpochWindow> RoamTracker::window_at(int64_t now_ms) {
  if (!schedule_) return std::nullopt;
  return schedule_->window_at(now_ms);
}

std::optional<RoamServer> RoamTracker::active_server(int64_t now_ms) {
  auto w = window_at(now_ms);
  if (!w || !pool_ || w->server >= pool_->servers.size()) return std::nullopt;
  return pool_->servers[w->server];
}

std::optional<uint64_t> RoamTracker::granted_until() const {
  if (!held_) return std::nullopt;
  return held_->index;
}

bool RoamTracker::expired(int64_t now_ms) {
  if (!schedule_) return false;
  return now_ms >= schedule_->window(schedule_->last_epoch()).end_ms;
}

}  // namespace roam::control
