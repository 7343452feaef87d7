#include "apps/resume_avoidance.hpp"

#include <algorithm>

namespace roam {

void ResumeAvoidance::add(std::vector<Entry>& entries, const IpAddress& member, uint64_t until_ms) {
  for (Entry& e : entries) {
    if (e.member == member) {
      e.until_ms = std::max(e.until_ms, until_ms);
      return;
    }
  }
  entries.push_back({member, until_ms});
}

void ResumeAvoidance::expire(std::vector<Entry>& entries, uint64_t now_ms) {
  std::erase_if(entries, [now_ms](const Entry& e) { return now_ms >= e.until_ms; });
}

void ResumeAvoidance::left(const IpAddress& member, uint64_t now_ms) { add(left_, member, now_ms + left_for_ms); }

void ResumeAvoidance::tried(uint64_t id, const IpAddress& member, uint64_t now_ms) {
  add(tried_[id], member, now_ms + tried_for_ms);
}

bool ResumeAvoidance::retrying(uint64_t id, uint64_t now_ms) {
  auto it = tried_.find(id);
  if (it == tried_.end()) return false;
  expire(it->second, now_ms);
  if (!it->second.empty()) return true;
  tried_.erase(it);
  return false;
}

std::vector<IpAddress> ResumeAvoidance::avoided(uint64_t id, uint64_t now_ms) {
  expire(left_, now_ms);
  std::vector<IpAddress> out;
  for (const Entry& e : left_) out.push_back(e.member);
  if (retrying(id, now_ms))
    for (const Entry& e : tried_[id])
      if (std::find(out.begin(), out.end(), e.member) == out.end()) out.push_back(e.member);
  return out;
}

}  // namespace roam
