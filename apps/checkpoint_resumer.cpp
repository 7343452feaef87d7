#include "apps/checkpoint_resumer.hpp"

#include "base/log.hpp"
#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/lwip_address.hpp"

namespace roam {

namespace {

// This client's live end of connection `id` (its pcb still points at the old server), or nullptr.
tcp_pcb* client_pcb(uint64_t id) {
  for (tcp_pcb* pcb : find_pcbs_by_connection_id(id))
    if (pcb->state == ESTABLISHED || pcb->state == CLOSE_WAIT) return pcb;
  return nullptr;
}

}  // namespace

CheckpointResumer::CheckpointResumer(Node& node, Follower& follower, CheckpointHolder& holder, IpAddress next,
                                     uint64_t after_ms, CounterRegistry& registry)
    : node_(node), follower_(follower), holder_(holder), next_(next), after_ms_(after_ms) {
  registry.add("checkpoint", "resumes_sent", &counters_.sent);
  registry.add("checkpoint", "resumes_done", &counters_.resumed);
  registry.add("checkpoint", "resumes_refused", &counters_.refused);
  registry.add("checkpoint", "resumes_no_channel", &counters_.no_channel);
  start_repeating_timer<&CheckpointResumer::poll>(timer_, node_.loop(), this, 250, false);
}

void CheckpointResumer::close() {
  if (timer_.valid()) timer_.close();
}

void CheckpointResumer::poll() {
  const uint64_t now = uv_now(node_.loop());
  for (uint64_t id : holder_.ids()) {
    if (settled_.count(id) != 0) continue;
    tcp_pcb* pcb = client_pcb(id);
    if (pcb == nullptr) {
      holder_.forget(id);  // ended: its checkpoint is of no use
      pending_.erase(id);
      continue;
    }
    if (from_lwip(pcb->remote_ip) == next_) continue;  // already there
    const uint64_t silent_ms = uint64_t{static_cast<uint32_t>(tcp_ticks - pcb->tmr)} * TCP_SLOW_INTERVAL;
    if (silent_ms < after_ms_) continue;
    auto it = pending_.find(id);
    if (it != pending_.end() && now - it->second < resend_ms) continue;
    pending_[id] = now;
    logger("checkpoint")->warn("server {} silent for {} ms on connection {}: resuming it at {}",
                               from_lwip(pcb->remote_ip).to_string(), silent_ms, id, next_.to_string());
    follower_.when_ready(next_, [this, id] { send_resume(id); });
  }
}

void CheckpointResumer::send_resume(uint64_t id) {
  tcp_pcb* pcb = client_pcb(id);
  const std::vector<uint8_t>* sealed = holder_.latest(id);
  if (pcb == nullptr || sealed == nullptr) return;
  control::ResumeRequest request;
  request.connection_id = id;
  request.rcv_nxt = pcb->rcv_nxt;
  request.snd_una = pcb->lastack;
  request.snd_nxt = pcb->snd_nxt;
  request.sealed = *sealed;
  if (follower_.send_to(next_, request)) {
    ++counters_.sent;
  } else {
    ++counters_.no_channel;
    logger("checkpoint")->warn("no trusted channel to {}: connection {} not resumed yet", next_.to_string(), id);
  }
}

void CheckpointResumer::on_answer(const IpAddress& server, const control::ResumeAnswer& answer) {
  if (!(server == next_) || pending_.erase(answer.connection_id) == 0) return;
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
  follower_.resumed_at(pcb, next_);
  settled_.erase(answer.connection_id);  // it may need to resume again from the next server
}

}  // namespace roam
