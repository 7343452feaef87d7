#include "apps/checkpoint_resumer.hpp"

#include <algorithm>

#include "base/log.hpp"
#include "stack/connection_id.hpp"
#include "stack/lwip_address.hpp"
#include "stack/tcp_connection.hpp"

namespace roam {

namespace {

// This client's live end of connection `id` (its pcb still points at the old server), or nullptr.
tcp_pcb* client_pcb(uint64_t id) {
  for (tcp_pcb* pcb : find_pcbs_by_connection_id(id))
    if (pcb->state == ESTABLISHED || pcb->state == CLOSE_WAIT) return pcb;
  return nullptr;
}

}  // namespace

CheckpointResumer::CheckpointResumer(Node& node, Follower& follower, CheckpointHolder& holder,
                                     std::optional<IpAddress> fixed, RoamFollow* schedule, uint64_t after_ms,
                                     CounterRegistry& registry)
    : node_(node), follower_(follower), holder_(holder), fixed_(fixed), schedule_(schedule), after_ms_(after_ms) {
  registry.add("checkpoint", "resumes_sent", &counters_.sent);
  registry.add("checkpoint", "resumes_done", &counters_.resumed);
  registry.add("checkpoint", "resumes_refused", &counters_.refused);
  registry.add("checkpoint", "resumes_no_channel", &counters_.no_channel);
  registry.add("checkpoint", "resumes_to_fixed", &counters_.to_fixed);
  registry.add("checkpoint", "resumes_to_active", &counters_.to_active);
  registry.add("checkpoint", "resumes_to_next_epoch", &counters_.to_next_epoch);
  registry.add("checkpoint", "resumes_no_target", &counters_.no_target);
  start_repeating_timer<&CheckpointResumer::poll>(timer_, node_.loop(), this, 250, false);
}

void CheckpointResumer::close() {
  if (timer_.valid()) timer_.close();
}

void CheckpointResumer::poll() {
  const uint64_t now = uv_now(node_.loop());
  for (uint64_t id : holder_.ids()) {
    tcp_pcb* pcb = client_pcb(id);
    if (pcb == nullptr) {
      holder_.forget(id);  // ended (resumed or refused before, too): its checkpoint is of no use
      pending_.erase(id);
      window_closed_at_.erase(id);
      settled_.erase(id);
      no_target_.erase(id);
      continue;
    }
    if (settled_.count(id) != 0) continue;
    const IpAddress silent_server = from_lwip(pcb->remote_ip);
    if (fixed_ && silent_server == *fixed_) continue;  // already there
    uint64_t silent_ms = pcb_silent_ms(pcb);
    // A receive window this client keeps closed (its app reads slowly) explains the
    // server's silence (it sends only persist probes, seconds apart): silence counts
    // from when the window was last seen open enough for a segment.
    if (pcb->rcv_wnd < pcb->mss) window_closed_at_[id] = now;
    if (auto closed = window_closed_at_.find(id); closed != window_closed_at_.end())
      silent_ms = std::min(silent_ms, now - closed->second);
    if (silent_ms < after_ms_) continue;
    auto it = pending_.find(id);
    if (it != pending_.end() && now - it->second.sent_ms < resend_ms) continue;
    auto next = pick_target(id, silent_server);
    if (!next) continue;
    pending_[id] = Pending{now, *next};
    logger("checkpoint")->warn("server {} silent for {} ms on connection {}: resuming it at {}",
                               silent_server.to_string(), silent_ms, id, next->to_string());
    follower_.when_ready(*next, [this, id, target = *next] { send_resume(id, target); });
  }
}

std::optional<IpAddress> CheckpointResumer::pick_target(uint64_t id, const IpAddress& dead) {
  if (fixed_) {
    ++counters_.to_fixed;
    return fixed_;
  }
  if (schedule_ != nullptr) {
    if (auto target = schedule_->takeover_target(dead)) {
      ++(target->next_epoch ? counters_.to_next_epoch : counters_.to_active);
      return target->server.address;
    }
  }
  if (no_target_.insert(id).second) {
    ++counters_.no_target;
    logger("checkpoint")->warn("server {} silent on connection {}: no --resume-to and no pool schedule naming "
                               "another member; not resumed",
                               dead.to_string(), id);
  }
  return std::nullopt;
}

void CheckpointResumer::send_resume(uint64_t id, const IpAddress& next) {
  tcp_pcb* pcb = client_pcb(id);
  const std::vector<uint8_t>* sealed = holder_.latest(id);
  if (pcb == nullptr || sealed == nullptr) return;
  control::ResumeRequest request;
  request.connection_id = id;
  request.rcv_nxt = pcb->rcv_nxt;
  request.snd_una = pcb->lastack;
  request.snd_nxt = pcb->snd_nxt;
  request.sealed = *sealed;
  if (follower_.send_to(next, request)) {
    ++counters_.sent;
  } else {
    ++counters_.no_channel;
    logger("checkpoint")->warn("no trusted channel to {}: connection {} not resumed yet", next.to_string(), id);
  }
}

void CheckpointResumer::on_answer(const IpAddress& server, const control::ResumeAnswer& answer) {
  auto it = pending_.find(answer.connection_id);
  if (it == pending_.end() || !(server == it->second.next)) return;
  pending_.erase(it);
  settled_.insert(answer.connection_id);
  if (answer.status != control::ResumeStatus::resumed) {
    ++counters_.refused;
    logger("checkpoint")->warn("{} refused to resume connection {} (generation {}): reason {}", server.to_string(),
                               answer.connection_id, answer.generation, answer.reason);
    return;
  }
  tcp_pcb* pcb = client_pcb(answer.connection_id);
  if (pcb == nullptr) return;
  ++counters_.resumed;
  logger("checkpoint")->info("connection {} resumed at {} from checkpoint generation {}", answer.connection_id,
                             server.to_string(), answer.generation);
  follower_.resumed_at(pcb, server);
  settled_.erase(answer.connection_id);  // it may need to resume again from the next server
}

}  // namespace roam
