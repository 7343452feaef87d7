#include "apps/roam_move_plan.hpp"

#include <algorithm>

namespace roam {

std::optional<uint32_t> RoamMovePlan::next(const RoamMoveView& view) {
  if (running_ || view.moving || view.epoch == 0 || view.active == self_ || view.sessions == 0) return std::nullopt;
  if (auto it = avoided_until_.find(view.active); it != avoided_until_.end()) {
    if (view.now_ms < it->second) return std::nullopt;
    avoided_until_.erase(it);
  }
  bool new_epoch = view.epoch != attempted_epoch_;
  bool retry = !new_epoch && view.now_ms - finished_ms_ >= retry_ms_ && (last_failed_ || view.sessions > left_);
  if (!new_epoch && !retry) return std::nullopt;
  attempted_epoch_ = view.epoch;
  running_ = true;
  return view.active;
}

void RoamMovePlan::finished(uint64_t now_ms, size_t offered, size_t left, bool failed) {
  running_ = false;
  finished_ms_ = now_ms;
  last_failed_ = failed;
  left_ = left <= offered ? left : offered;
}

void RoamMovePlan::avoid(uint32_t member, uint64_t now_ms) {
  if (member == self_) return;
  uint64_t& until = avoided_until_[member];
  until = std::max(until, now_ms + avoid_ms);
}

}  // namespace roam
