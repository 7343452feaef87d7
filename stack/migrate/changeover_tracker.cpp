#include "stack/migrate/changeover_tracker.hpp"

#include <algorithm>

namespace roam::migrate {

uint64_t ChangeoverTracker::open_batch(std::string target, size_t connections, uint64_t now_ns) {
  uint64_t id = next_batch_++;
  Batch& batch = batches_[id];
  batch.report.target = std::move(target);
  batch.report.connections = connections;
  batch.started_ns = now_ns;
  return id;
}

void ChangeoverTracker::handover_started(uint64_t batch, const FlowKey& flow) {
  auto found = batches_.find(batch);
  if (found == batches_.end()) return;
  ++found->second.report.handovers;
  handovers_[flow] = batch;
}

uint64_t ChangeoverTracker::batch_of_handover(const FlowKey& flow) const {
  auto found = handovers_.find(flow);
  return found == handovers_.end() ? 0 : found->second;
}

bool ChangeoverTracker::handover_finished(const FlowKey& flow, bool answered, uint64_t now_ns) {
  auto entry = handovers_.find(flow);
  if (entry == handovers_.end()) return false;
  uint64_t batch_id = entry->second;
  handovers_.erase(entry);
  auto found = batches_.find(batch_id);
  if (found == batches_.end()) return false;
  ChangeoverReport& r = found->second.report;
  ++(answered ? r.answered : r.failed);
  if (r.answered + r.failed == r.handovers && on_handovers_) {
    ChangeoverReport copy = r;
    copy.elapsed_ms = static_cast<double>(now_ns - found->second.started_ns) / 1e6;
    on_handovers_(copy);
  }
  return true;
}

void ChangeoverTracker::await(const FlowKey& flow, uint64_t batch, uint64_t now_ns) {
  uint64_t due = now_ns + first_poke_ns;
  awaiting_[flow] = Awaiting{batch, poke_attempts, due, first_poke_ns};
  next_deadline_ns_ = std::min(next_deadline_ns_, due);
}

void ChangeoverTracker::count(uint64_t batch, bool heard_on_new_path, uint64_t now_ns) {
  auto found = batches_.find(batch);
  if (found == batches_.end()) return;
  ++(heard_on_new_path ? found->second.report.heard : found->second.report.unheard);
  ++(heard_on_new_path ? counters_.heard : counters_.unheard);
  if (heard_on_new_path && now_ns >= found->second.started_ns)
    changeover_seconds_.observe(static_cast<double>(now_ns - found->second.started_ns) / 1e9);
  settle_if_done(batch, now_ns);
}

void ChangeoverTracker::heard(const FlowKey& flow, uint64_t now_ns) {
  auto found = awaiting_.find(flow);
  if (found == awaiting_.end()) return;
  uint64_t batch = found->second.batch;
  awaiting_.erase(found);
  count(batch, true, now_ns);
}

void ChangeoverTracker::gone(const FlowKey& flow, uint64_t now_ns) {
  if (auto h = handovers_.find(flow); h != handovers_.end()) {
    uint64_t batch = h->second;
    handovers_.erase(h);
    count(batch, false, now_ns);
    return;
  }
  auto found = awaiting_.find(flow);
  if (found == awaiting_.end()) return;
  uint64_t batch = found->second.batch;
  awaiting_.erase(found);
  count(batch, false, now_ns);
}

void ChangeoverTracker::settle_if_done(uint64_t batch, uint64_t now_ns) {
  auto found = batches_.find(batch);
  if (found == batches_.end()) return;
  ChangeoverReport& r = found->second.report;
  if (r.heard + r.unheard < r.connections) return;
  r.elapsed_ms = static_cast<double>(now_ns - found->second.started_ns) / 1e6;
  ChangeoverReport report = std::move(r);
  batches_.erase(found);
  if (on_settled_) on_settled_(report);
}

uint64_t ChangeoverTracker::on_time(uint64_t now_ns, const PokeFn& poke) {
  if (now_ns < next_deadline_ns_) return next_deadline_ns_;
  next_deadline_ns_ = UINT64_MAX;
  std::vector<std::pair<uint64_t, bool>> settled;  // (batch, heard): counted after the walk
  for (auto it = awaiting_.begin(); it != awaiting_.end();) {
    Awaiting& a = it->second;
    if (now_ns < a.next_poke_ns) {
      next_deadline_ns_ = std::min(next_deadline_ns_, a.next_poke_ns);
      ++it;
      continue;
    }
    PokeResult result = poke(it->first, a.pokes_left <= 0);
    if (result == PokeResult::given_up) ++counters_.unanswered;
    if (result != PokeResult::poked) {
      settled.emplace_back(a.batch, result == PokeResult::heard);
      it = awaiting_.erase(it);
      continue;
    }
    ++counters_.pokes;
    --a.pokes_left;
    a.interval_ns = std::min(a.interval_ns * 2, max_poke_ns);
    a.next_poke_ns = now_ns + a.interval_ns;
    next_deadline_ns_ = std::min(next_deadline_ns_, a.next_poke_ns);
    ++it;
  }
  for (auto [batch, was_heard] : settled) count(batch, was_heard, now_ns);
  return next_deadline_ns_;
}

}  // namespace roam::migrate
