#include "apps/checkpoint_resumer.hpp"

#include <algorithm>

#include "apps/resume_silence.hpp"
#include "base/log.hpp"
#include "stack/connection_id.hpp"
#include "stack/flow_key.hpp"
#include "stack/lwip_address.hpp"
#include "stack/tcp_connection.hpp"
// After stack/ (stack/lwip.hpp sets lwIP up): tcp_rst, for a copy left behind.
#include "lwip/priv/tcp_priv.h"

namespace roam {

tcp_pcb* client_pcb(uint64_t id) {
  for (tcp_pcb* pcb : find_pcbs_by_connection_id(id))
    if (pcb->state == ESTABLISHED || pcb->state == CLOSE_WAIT) return pcb;
  return nullptr;
}

std::optional<IpAddress> client_pcb_server(uint64_t id) {
  tcp_pcb* pcb = client_pcb(id);
  if (pcb == nullptr) return std::nullopt;
  return from_lwip(pcb->remote_ip);
}

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
  registry.add("checkpoint", "resumes_unanswered", &counters_.unanswered);
  registry.add("checkpoint", "resumes_retried_elsewhere", &counters_.retried_elsewhere);
  registry.add("checkpoint", "resumes_avoided_left", &counters_.avoided_left);
  registry.add("checkpoint", "stale_copies_reset", &counters_.stale_copies_reset);
  registry.add("checkpoint", "stale_copies_unknown", &counters_.stale_copies_unknown);
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
      avoidance_.forget(id);
      resumed_at_.erase(id);
      left_.erase(id);
      continue;
    }
    if (settled_.count(id) != 0) continue;
    const IpAddress silent_server = from_lwip(pcb->remote_ip);
    if (fixed_ && silent_server == *fixed_) continue;  // already there
    ServerSilence view;
    // The server's FIN is here (CLOSE_WAIT): it has nothing more to send (apps/resume_silence.hpp).
    view.server_finished = pcb->state == CLOSE_WAIT;
    view.since_segment_ms = pcb_silent_ms(pcb);
    // A receive window this client keeps closed (its app reads slowly) explains the
    // server's silence (it sends only persist probes, seconds apart): silence counts
    // from when the window was last seen open enough for a segment.
    // The window the server knows is the one last announced: lwIP announces an opening
    // window only once it grew by its update threshold (several MSS), so rcv_wnd can be
    // open here while the server still sees it closed and waits for its persist timer.
    if (pcb->rcv_wnd < pcb->mss || pcb->rcv_ann_wnd < pcb->mss) window_closed_at_[id] = now;
    if (auto closed = window_closed_at_.find(id); closed != window_closed_at_.end())
      view.since_window_closed_ms = now - closed->second;
    // A connection just re-pointed holds its output until its NAT handover is answered (up
    // to 8 SYNs, seconds): the new server cannot have spoken yet. Silence counts from the
    // end of the handover, or from the resume itself.
    if (follower_.handover().is_pending(flow_of(pcb))) resumed_at_[id] = now;
    if (auto resumed = resumed_at_.find(id); resumed != resumed_at_.end())
      view.since_resumed_ms = now - resumed->second;
    const std::optional<uint64_t> silence = server_silence_ms(view);
    if (!silence || *silence < after_ms_) continue;
    const uint64_t silent_ms = *silence;
    auto it = pending_.find(id);
    if (it != pending_.end()) {
      if (now - it->second.sent_ms < resend_ms) continue;
      // No answer: that member may be dead too (or its channel never came up). With a
      // schedule to choose from, the next candidate is asked instead.
      ++counters_.unanswered;
      if (!fixed_) avoidance_.tried(id, it->second.next, now);
      pending_.erase(it);  // counted once; a late RESUMED from it is ignored from here on
    }
    auto next = pick_target(id, silent_server, now);
    if (!next) continue;
    pending_[id] = Pending{now, *next};
    logger("checkpoint")->warn("server {} silent for {} ms on connection {}: resuming it at {} (our window {}, "
                               "announced {})",
                               silent_server.to_string(), silent_ms, id, next->to_string(), pcb->rcv_wnd,
                               pcb->rcv_ann_wnd);
    follower_.when_ready(*next, [this, id, target = *next] { send_resume(id, target); });
  }
}

std::optional<IpAddress> CheckpointResumer::pick_target(uint64_t id, const IpAddress& dead, uint64_t now_ms) {
  if (fixed_) {
    ++counters_.to_fixed;
    return fixed_;
  }
  if (schedule_ != nullptr) {
    const bool retry = avoidance_.retrying(id, now_ms);
    const std::vector<IpAddress> avoid = avoidance_.avoided(id, now_ms);
    if (auto target = schedule_->takeover_target(dead, avoid)) {
      ++(target->next_epoch ? counters_.to_next_epoch : counters_.to_active);
      if (retry) ++counters_.retried_elsewhere;
      // Would the schedule alone have named a member this client left? Counted, to show
      // the memory at work.
      if (auto plain = schedule_->takeover_target(dead); plain && !(plain->server.address == target->server.address))
        if (!retry) ++counters_.avoided_left;
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
  const uint64_t now = uv_now(node_.loop());
  if (answer.status != control::ResumeStatus::resumed) {
    ++counters_.refused;
    // 33: that member holds the connection live, so it is not the one to rebuild it; the
    // schedule's next candidate may be (PROTOCOL.md 14.5). Other reasons are the
    // checkpoint's own faults or the ledger's: no other member would do better.
    const bool elsewhere = answer.reason == control::resume_reason_connection_live && !fixed_ && schedule_ != nullptr;
    logger("checkpoint")->warn("{} refused to resume connection {} (generation {}): reason {}{}", server.to_string(),
                               answer.connection_id, answer.generation, answer.reason,
                               elsewhere ? "; the next candidate is asked" : "");
    if (elsewhere)
      avoidance_.tried(answer.connection_id, server, now);
    else
      settled_.insert(answer.connection_id);
    return;
  }
  tcp_pcb* pcb = client_pcb(answer.connection_id);
  if (pcb == nullptr) return;
  avoidance_.left(from_lwip(pcb->remote_ip), now);
  resumed_at_[answer.connection_id] = now;
  // Every server left is remembered: one left earlier may come back after a later resume.
  left_[answer.connection_id].push_back(LeftBehind{flow_of(pcb), pcb->lastack, pcb->snd_nxt, pcb->rcv_nxt, 0});
  avoidance_.forget(answer.connection_id);
  ++counters_.resumed;
  logger("checkpoint")->info("connection {} resumed at {} from checkpoint generation {}{}", answer.connection_id,
                             server.to_string(), answer.generation,
                             answer.handover_token ? " (NAT handover)" : "");
  follower_.resumed_at(pcb, server, answer.handover_token);
}

void CheckpointResumer::on_stale_copy(const IpAddress& server, uint64_t id) {
  LeftBehind* found = nullptr;
  if (auto it = left_.find(id); it != left_.end())
    for (LeftBehind& left : it->second)
      if (left.flow.remote == server) found = &left;
  if (found == nullptr) {
    // Not a server this client resumed the connection away from (a live move leaves no
    // copy behind): nothing of ours to end there.
    ++counters_.stale_copies_unknown;
    return;
  }
  LeftBehind& left = *found;
  const uint64_t now = uv_now(node_.loop());
  if (left.reset_ms != 0 && now - left.reset_ms < stale_reset_interval_ms) return;
  left.reset_ms = now;
  // lwIP takes a RST only at exactly its rcv_nxt (RFC 5961 3.2; in-window ones get a
  // challenge ACK): the old server acknowledged snd_una, and may have taken up to snd_nxt.
  const ip_addr_t local = to_lwip(left.flow.local), remote = to_lwip(left.flow.remote);
  tcp_rst(nullptr, left.snd_una, left.rcv_nxt, &local, &remote, left.flow.local_port, left.flow.remote_port);
  if (left.snd_nxt != left.snd_una)
    tcp_rst(nullptr, left.snd_nxt, left.rcv_nxt, &local, &remote, left.flow.local_port, left.flow.remote_port);
  ++counters_.stale_copies_reset;
  logger("checkpoint")->warn("{} still holds connection {}, which was resumed elsewhere: reset its copy (flow {})",
                             server.to_string(), id, left.flow.to_string());
}

}  // namespace roam
