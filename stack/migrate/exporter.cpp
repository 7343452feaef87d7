#include "stack/migrate/exporter.hpp"

#include <uv.h>

#include "base/log.hpp"
#include "stack/connection_id.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/wire/connection_snapshot.hpp"

namespace roam::migrate {

const char* session_outcome_name(SessionOutcome outcome) {
  switch (outcome) {
    case SessionOutcome::moved:
      return "moved";
    case SessionOutcome::failed:
      return "failed";
    case SessionOutcome::stayed:
      return "stayed";
    case SessionOutcome::no_channel:
      return "no channel";
    case SessionOutcome::closed_young:
      return "closed young";
  }
  return "?";
}

Exporter::Exporter(ExportServices services, ExportPolicy policy, std::string target,
                   std::vector<MovableSession*> sessions, uint64_t now_ms, DoneFn done)
    : services_(services),
      policy_(std::move(policy)),
      candidates_(std::move(sessions)),
      done_(std::move(done)),
      deadline_ms_(now_ms + policy_.timeout_ms),
      started_ns_(uv_hrtime()) {
  report_.target = std::move(target);
  report_.candidates = candidates_.size();
}

SessionReport& Exporter::record(MovableSession* session, tcp_pcb* pcb, SessionOutcome outcome, std::string reason) {
  SessionReport entry;
  entry.kind = session->kind();
  if (pcb != nullptr) {
    entry.flow = flow_of(pcb);
    entry.connection_id = connection_id(pcb);
  }
  entry.outcome = outcome;
  entry.reason = std::move(reason);
  report_.sessions.push_back(std::move(entry));
  return report_.sessions.back();
}

void Exporter::start(TransferLink& link) {
  if (started_ || finished_) return;
  started_ = true;
  for (MovableSession* session : candidates_) {
    tcp_pcb* pcb = session->pcb();
    std::string why;
    if (!session->movable()) {
      why = "its session is ending";
    } else if (auto movable = check_movable(pcb); !movable) {
      why = movable.error();
    } else if (services_.guard.is_parked(flow_of(pcb))) {
      // It arrived here and its client has not followed yet: it cannot move on.
      why = "it arrived here and its client has not followed yet";
    }
    if (!why.empty()) {
      ++report_.stayed;
      logger("migrate")->info("{}: stays here: {}", pcb != nullptr ? flow_of(pcb).to_string() : "?", why);
      record(session, pcb, SessionOutcome::stayed, std::move(why));
      continue;
    }
    uint64_t id = connection_id(pcb);
    if (policy_.too_young && policy_.too_young(id)) {
      // Long-lived policy: a young connection is not worth a move; its client reconnects.
      ++report_.closed_young;
      logger("migrate")->info("{}: too young: closed instead of moved", flow_of(pcb).to_string());
      record(session, pcb, SessionOutcome::closed_young, "younger than the long-lived limit");
      session->close();
      continue;
    }
    const void* client = services_.clients.client_of(id);
    if (client == nullptr) {
      ++report_.stayed;
      logger("migrate")->info("{}: stays here: its client has no control channel to be told by",
                              flow_of(pcb).to_string());
      record(session, pcb, SessionOutcome::no_channel, "its client has no control channel here");
      continue;
    }
    session->freeze();
    freeze_pcb(pcb);
    FlowKey flow = flow_of(pcb);
    services_.guard.silence(flow);
    auto snapshot = capture_snapshot(pcb, session->received_unconsumed(), session->app_state());
    if (!snapshot) {
      logger("migrate")->warn("{}: cannot capture: {}", flow.to_string(), snapshot.error());
      services_.guard.unsilence(flow);
      thaw_pcb(pcb);
      session->thaw();
      ++report_.failed;
      if (report_.error.empty()) report_.error = snapshot.error();
      record(session, pcb, SessionOutcome::failed, snapshot.error());
      continue;
    }
    // The connection's segment-MAC key travels with it: protected from its first packet
    // at the new host, without waiting for the client to register there.
    if (services_.segment_mac != nullptr) snapshot->segment_mac = services_.segment_mac->state_of(pcb);
    record(session, pcb, SessionOutcome::failed, "not answered");  // until the target answers
    in_flight_.push_back({session, pcb, report_.sessions.size() - 1, client, false});
    // One buffer from snapshot to socket: at a 4 MiB window every copy of it costs
    // milliseconds of the move (mostly first-touch page faults).
    std::vector<uint8_t> frame;
    std::string_view kind = session->kind();
    frame.reserve(8 + kind.size() + 256 + snapshot->unacked.size() + snapshot->unsent.size() +
                  snapshot->received.size() + snapshot->app_state.size());
    begin_frame(FrameType::session, frame);
    std::optional<crypto::HandoverToken> token;
    if (policy_.handover) token = tokens_.try_emplace(client, crypto::random_handover_token()).first->second;
    append_session_header(kind, token, frame);
    wire::encode_snapshot(*snapshot, frame);
    finish_frame(frame);
    link.send_session(std::move(frame));
  }
  if (in_flight_.empty()) finish();
}

void Exporter::on_result(const SessionResult& result) {
  if (finished_) return;
  if (answered_ >= in_flight_.size()) {
    abandon("the target answered more sessions than were sent");
    return;
  }
  InFlight& item = in_flight_[answered_++];
  item.settled = true;
  SessionReport& entry = report_.sessions[item.report_index];
  if (result.ok) {
    if (auto address = IpAddress::parse(result.text)) report_.new_address = *address;
    if (tcp_pcb* pcb = item.session->release_pcb()) discard_frozen_pcb(pcb);
    if (services_.segment_mac != nullptr) services_.segment_mac->forget(entry.flow);
    services_.table.drop(item.session);
    item.session = nullptr;
    entry.outcome = SessionOutcome::moved;
    entry.reason.clear();
    ++report_.moved;
  } else {
    resume(item, result.text);
  }
  if (answered_ == in_flight_.size()) finish();
}

void Exporter::resume(InFlight& item, const std::string& reason) {
  // The connection goes on here, exactly where it was.
  SessionReport& entry = report_.sessions[item.report_index];
  services_.guard.unsilence(entry.flow);
  thaw_pcb(item.pcb);
  item.session->thaw();
  entry.outcome = SessionOutcome::failed;
  entry.reason = reason;
  ++report_.failed;
  if (report_.error.empty()) report_.error = reason;
}

void Exporter::abandon(const std::string& reason) {
  if (finished_) return;
  logger("migrate")->warn("migration to {} failed: {}", report_.target, reason);
  for (auto& item : in_flight_) {
    if (item.settled) continue;
    item.settled = true;
    resume(item, reason);
  }
  if (report_.error.empty() || report_.moved + report_.failed == 0) report_.error = reason;
  finish();
}

uint64_t Exporter::on_time(uint64_t now_ms) {
  if (!finished_ && now_ms >= deadline_ms_)
    abandon("no complete answer within " + std::to_string(policy_.timeout_ms / 1000) + " s");
  return deadline();
}

void Exporter::finish() {
  if (finished_) return;
  finished_ = true;
  if (report_.moved > 0) {
    std::vector<MovedConnection> moved;
    moved.reserve(report_.moved);
    for (const auto& item : in_flight_) {
      if (item.session != nullptr) continue;  // did not move
      const SessionReport& entry = report_.sessions[item.report_index];
      MovedConnection m{entry.connection_id, entry.flow, item.client, std::nullopt};
      if (auto token = tokens_.find(item.client); token != tokens_.end()) m.token = token->second;
      moved.push_back(m);
    }
    services_.clients.announce(moved, report_.new_address);
  }
  report_.elapsed_ms = static_cast<double>(uv_hrtime() - started_ns_) / 1e6;
  services_.node.kick();
  // `done` may destroy this exporter: nothing after it.
  auto done = std::move(done_);
  if (done) done(report_);
}

}  // namespace roam::migrate
