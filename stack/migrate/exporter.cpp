#include "stack/migrate/exporter.hpp"

#include <uv.h>

#include <algorithm>
#include <unordered_set>
#include <utility>

#include "base/log.hpp"
#include "stack/connection_id.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/migrate/stay_reason.hpp"
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

const char* precopy_skip_name(PrecopySkip skip) {
  switch (skip) {
    case PrecopySkip::none:
      return "none";
    case PrecopySkip::off:
      return "off";
    case PrecopySkip::target:
      return "target";
    case PrecopySkip::idle:
      return "idle";
  }
  return "?";
}

std::string stayed_summary(const ExportReport& report) {
  std::vector<std::pair<std::string, size_t>> labels;  // few: a linear search is fine
  size_t stayed = 0;
  for (const auto& session : report.sessions) {
    if (session.outcome != SessionOutcome::stayed && session.outcome != SessionOutcome::no_channel) continue;
    ++stayed;
    auto found = std::find_if(labels.begin(), labels.end(), [&](const auto& l) { return l.first == session.label; });
    if (found == labels.end())
      labels.emplace_back(session.label, 1);
    else
      ++found->second;
  }
  std::string out;
  if (stayed > 0) {
    out = std::to_string(stayed) + " stayed:";
    for (size_t i = 0; i < labels.size(); ++i)
      out += (i == 0 ? " " : ", ") + std::to_string(labels[i].second) + " " + labels[i].first;
  }
  if (report.closed_young > 0)
    out += (out.empty() ? "" : "; ") + std::to_string(report.closed_young) + " closed young";
  return out;
}

namespace {
// A session's identity beyond its address: the connection id of its first leg.
uint64_t first_leg_id(MovableSession& session) {
  std::vector<SessionLeg> legs = session.legs();
  return !legs.empty() && legs.front().pcb != nullptr ? connection_id(legs.front().pcb) : 0;
}
}  // namespace

Exporter::Exporter(ExportServices services, ExportPolicy policy, std::string target,
                   std::vector<MovableSession*> sessions, uint64_t now_ms, DoneFn done)
    : services_(services),
      policy_(std::move(policy)),
      done_(std::move(done)),
      deadline_ms_(now_ms + policy_.timeout_ms),
      started_ns_(uv_hrtime()) {
  report_.target = std::move(target);
  report_.candidates = sessions.size();
  candidates_.reserve(sessions.size());
  for (MovableSession* session : sessions) candidates_.push_back({session, first_leg_id(*session)});
}

namespace {
// Fixed snapshot fields and headers: generous, for sizing only.
constexpr size_t snapshot_overhead_bytes = 256;
// A leg's framing in the session payload: role, token length, token, snapshot length.
constexpr size_t leg_header_bytes = 2 + 32 + 4;

size_t snapshot_bytes(const wire::ConnectionSnapshot& s) {
  return snapshot_overhead_bytes + s.unacked.size() + s.unsent.size() + s.received.size() + s.app_state.size();
}
}  // namespace

SessionReport& Exporter::record(MovableSession* session, const std::vector<SessionLeg>& legs, SessionOutcome outcome,
                                std::string reason, std::string label) {
  SessionReport entry;
  entry.kind = session->kind();
  for (const auto& leg : legs) {
    LegReport l;
    l.role = leg.role;
    if (leg.pcb != nullptr) {
      l.flow = flow_of(leg.pcb);
      l.connection_id = connection_id(leg.pcb);
    }
    entry.legs.push_back(l);
  }
  if (!entry.legs.empty()) {
    entry.flow = entry.legs.front().flow;
    entry.connection_id = entry.legs.front().connection_id;
  }
  entry.outcome = outcome;
  entry.reason = std::move(reason);
  entry.label = std::move(label);
  report_.sessions.push_back(std::move(entry));
  return report_.sessions.back();
}

void Exporter::log_stayed(const std::string& name, const SessionReport& entry) {
  // A host with thousands of relay sessions would otherwise write thousands of lines per
  // move: the first few say why, the summary counts the rest.
  if (++stayed_logged_ <= max_stayed_logged) {
    logger("migrate")->info("{} ({}): stays here: {}", name, entry.kind, entry.reason);
  } else if (stayed_logged_ == max_stayed_logged + 1) {
    logger("migrate")->info("more sessions stay here: not logged one by one (the move's summary counts them)");
  }
}

std::function<bool(const Exporter::Candidate&)> Exporter::gone_test() {
  std::vector<MovableSession*> live_list = services_.table.sessions();
  return [live = std::unordered_set<MovableSession*>(live_list.begin(), live_list.end())](const Candidate& c) {
    return live.count(c.session) == 0 || first_leg_id(*c.session) != c.connection_id;
  };
}

void Exporter::drop_gone_candidates() {
  std::erase_if(candidates_, gone_test());
  report_.candidates = candidates_.size();
}

uint64_t Exporter::queued_stream_bytes() {
  uint64_t queued = 0;
  for (const Candidate& candidate : candidates_) {
    std::vector<SessionLeg> legs = candidate.session->legs();
    if (!admit(*candidate.session, legs).moves()) continue;  // as start() decides
    for (size_t i = 0; i < legs.size(); ++i) {
      const tcp_pcb* pcb = legs[i].pcb;
      queued += static_cast<uint32_t>(pcb->snd_lbb - pcb->lastack);
      // A copy only to count it: once per move, and bounded by the receive window.
      queued += candidate.session->leg_received(i).size();
      if (pcb->refused_data != nullptr) queued += pcb->refused_data->tot_len;
    }
  }
  return queued;
}

PrecopySkip Exporter::decide_precopy(bool target_accepts) {
  PrecopySkip skip = PrecopySkip::none;
  if (!policy_.precopy) {
    skip = PrecopySkip::off;
  } else if (!target_accepts) {
    skip = PrecopySkip::target;
  } else if (policy_.precopy_idle_bytes > 0) {
    drop_gone_candidates();
    report_.precopy_queued_bytes = queued_stream_bytes();
    if (report_.precopy_queued_bytes <= policy_.precopy_idle_bytes) skip = PrecopySkip::idle;
  }
  report_.precopy_skipped = skip;
  precopy_chosen_ = skip == PrecopySkip::none;
  if (skip == PrecopySkip::target)
    logger("migrate")->info("pre-copy to {}: the target did not announce it; the move sends whole snapshots",
                            report_.target);
  return skip;
}

bool Exporter::precopy_ruled_out() {
  if (policy_.precopy && policy_.precopy_idle_bytes == 0) return false;  // on: the target's answer decides
  // Off, or auto: whatever the target announces, an idle move does not pre-copy. A busy
  // one is decided again on the answer.
  return decide_precopy(true) != PrecopySkip::none;
}

uint64_t Exporter::precopy_round(TransferLink& link) {
  if (started_ || finished_ || !precopy_chosen_ || !precopy_relied_on_) return 0;
  // Sessions may end between rounds (each waits for the target's sync).
  drop_gone_candidates();
  uint64_t sent = 0;
  std::vector<uint8_t> frame;
  auto send_range = [&](uint64_t id, PrecopyStreamKind stream, uint32_t from, std::span<const uint8_t> bytes) {
    for (size_t at = 0; at < bytes.size(); at += precopy_frame_bytes) {
      auto chunk = bytes.subspan(at, std::min(precopy_frame_bytes, bytes.size() - at));
      frame.clear();
      append_precopy_frame(id, stream, from + static_cast<uint32_t>(at), chunk, frame);
      link.send_frame(std::move(frame));
      frame = {};
      sent += chunk.size();
    }
  };
  std::vector<uint8_t> bytes;
  for (const Candidate& candidate : candidates_) {
    MovableSession* session = candidate.session;
    std::vector<SessionLeg> legs = session->legs();
    // Only what start() would move (not one that stays, is closed as too young or has no
    // client to tell); the rest would carry its bytes for nothing.
    if (!admit(*session, legs).moves()) continue;
    for (size_t i = 0; i < legs.size(); ++i) {
      const tcp_pcb* pcb = legs[i].pcb;
      uint64_t id = connection_id(pcb);
      if (id == 0) continue;
      // The send stream from snd_una to what the app queued.
      SeqRange queued{pcb->lastack, pcb->snd_lbb};
      uint32_t from = precopied_.plan(id, PrecopyStreamKind::send, queued);
      bytes.clear();
      if (from != queued.end && read_send_queue(pcb, from, bytes))
        send_range(id, PrecopyStreamKind::send, from, bytes);
      else if (from != queued.end)
        precopy_relied_on_ = false;  // the ledger now disagrees with what was sent
      // The unread received bytes end at rcv_nxt (ESTABLISHED: no FIN counted in it).
      if (pcb->state != ESTABLISHED) continue;
      bytes = session->leg_received(i);
      append_refused_data(pcb, bytes);
      SeqRange unread{pcb->rcv_nxt - static_cast<uint32_t>(bytes.size()), pcb->rcv_nxt};
      from = precopied_.plan(id, PrecopyStreamKind::receive, unread);
      if (from != unread.end)
        send_range(id, PrecopyStreamKind::receive, from, std::span<const uint8_t>(bytes).subspan(from - unread.first));
    }
  }
  if (sent == 0) return 0;
  frame.clear();
  append_frame(FrameType::precopy_sync, std::span<const uint8_t>(), frame);
  link.send_frame(std::move(frame));
  ++report_.precopy_rounds;
  report_.precopy_bytes += sent;
  last_round_bytes_ = sent;
  return sent;
}

void Exporter::precopy_confirmed(std::optional<uint64_t> held_bytes) {
  if (held_bytes && *held_bytes == precopied_.held_bytes()) return;
  // The target holds something else than the frames said: rely on nothing (the snapshots
  // go whole), and pre-copy no more.
  logger("migrate")->warn("pre-copy to {}: the target {}; the move sends whole snapshots", report_.target,
                          held_bytes ? "holds " + std::to_string(*held_bytes) + " bytes, not " +
                                           std::to_string(precopied_.held_bytes())
                                     : std::string("refused some pre-copied bytes"));
  precopy_relied_on_ = false;
  report_.precopy_refused = true;
}

bool Exporter::precopy_wants_round() const {
  return precopy_chosen_ && precopy_relied_on_ && !started_ && !finished_ &&
         report_.precopy_rounds < policy_.precopy_max_rounds &&
         (report_.precopy_rounds == 0 || last_round_bytes_ >= policy_.precopy_min_round_bytes);
}

bool Exporter::precopy_wants_held_round() const {
  return policy_.precopy_hold_output && precopy_chosen_ && precopy_relied_on_ && !started_ && !finished_ &&
         !output_held_ && report_.precopy_rounds > 0;
}

uint64_t Exporter::precopy_held_round(TransferLink& link) {
  if (!precopy_wants_held_round()) return 0;
  drop_gone_candidates();
  output_held_ = true;
  for (const Candidate& candidate : candidates_)
    if (admit(*candidate.session, candidate.session->legs()).moves()) candidate.session->hold_output();
  uint64_t sent = precopy_round(link);
  if (sent > 0) report_.precopy_held_round = true;
  return sent;
}

void Exporter::release_held_output() {
  if (!output_held_) return;
  output_held_ = false;
  // A moved session left the table (or gave up its legs): it is gone here, and the report
  // still counts it among the candidates. The others go on where they are.
  auto gone = gone_test();
  for (const Candidate& candidate : candidates_)
    if (!gone(candidate)) candidate.session->release_output();
}

Exporter::Admission Exporter::admit(const MovableSession& session, const std::vector<SessionLeg>& legs) const {
  Admission out;
  out.stays = why_session_stays(session, legs, services_.guard);
  if (out.stays) return out;
  if (policy_.too_young && policy_.too_young(connection_id(legs.front().pcb))) {
    out.young = true;
    return out;
  }
  // Every client leg's client must be told where it went; an origin leg is told by the
  // new host.
  out.clients.assign(legs.size(), nullptr);
  out.told = true;
  for (size_t i = 0; i < legs.size(); ++i) {
    if (legs[i].role != LegRole::client) continue;
    out.clients[i] = services_.clients.client_of(connection_id(legs[i].pcb));
    if (out.clients[i] == nullptr) out.told = false;
  }
  return out;
}

bool Exporter::would_freeze_any() {
  if (started_ || finished_) return false;
  drop_gone_candidates();
  return std::any_of(candidates_.begin(), candidates_.end(), [this](const Candidate& candidate) {
    return admit(*candidate.session, candidate.session->legs()).moves();
  });
}

void Exporter::start(TransferLink& link) {
  if (started_ || finished_) return;
  started_ = true;
  drop_gone_candidates();
  for (const Candidate& candidate : candidates_) {
    MovableSession* session = candidate.session;
    std::vector<SessionLeg> legs = session->legs();
    std::string name = !legs.empty() && legs.front().pcb != nullptr ? flow_of(legs.front().pcb).to_string() : "?";
    Admission admission = admit(*session, legs);
    if (auto& why = admission.stays) {
      ++report_.stayed;
      log_stayed(name, record(session, legs, SessionOutcome::stayed, std::move(why->text), std::move(why->label)));
      continue;
    }
    if (admission.young) {
      // Long-lived policy: a young connection is not worth a move; its client reconnects.
      ++report_.closed_young;
      logger("migrate")->info("{}: too young: closed instead of moved", name);
      record(session, legs, SessionOutcome::closed_young, "younger than the long-lived limit", "young");
      session->close();
      continue;
    }
    std::vector<const void*>& clients = admission.clients;
    if (!admission.told) {
      ++report_.stayed;
      StayReason why = no_channel_reason();
      log_stayed(name, record(session, legs, SessionOutcome::no_channel, std::move(why.text), std::move(why.label)));
      continue;
    }
    // All legs or none: each is frozen and silenced, then captured; a leg that cannot be
    // captured puts every leg back exactly as it was.
    uint64_t frozen_ns = uv_hrtime();
    if (report_.first_frozen_ns == 0) report_.first_frozen_ns = frozen_ns;
    session->freeze();
    for (const auto& leg : legs) {
      freeze_pcb(leg.pcb);
      services_.guard.silence(flow_of(leg.pcb));
    }
    const bool first = in_flight_.empty();
    std::vector<wire::ConnectionSnapshot> snapshots;
    snapshots.reserve(legs.size());
    std::string failure;
    size_t frame_bytes = 8 + std::string_view(session->kind()).size();
    for (size_t i = 0; i < legs.size() && failure.empty(); ++i) {
      auto snapshot = capture_snapshot(legs[i].pcb, session->leg_received(i), session->leg_app_state(i));
      if (!snapshot) {
        failure = legs.size() > 1 ? std::string(leg_role_name(legs[i].role)) + " leg: " + snapshot.error()
                                  : snapshot.error();
        break;
      }
      // The connection's segment-MAC key travels with it: protected from its first packet
      // at the new host, without waiting for the client to register there.
      if (services_.segment_mac != nullptr) snapshot->segment_mac = services_.segment_mac->state_of(legs[i].pcb);
      // What the target already holds stays out of the frame: the freeze sends the delta.
      if (precopy_chosen_ && precopy_relied_on_ && snapshot->connection_id != 0)
        report_.precopy_bytes_relied +=
            omit_precopied(*snapshot, precopied_.held(snapshot->connection_id, PrecopyStreamKind::send),
                           precopied_.held(snapshot->connection_id, PrecopyStreamKind::receive));
      frame_bytes += leg_header_bytes + snapshot_bytes(*snapshot);
      snapshots.push_back(std::move(*snapshot));
    }
    if (failure.empty() && frame_bytes > max_frame_payload) failure = "its legs' snapshots exceed one session frame";
    if (!failure.empty()) {
      logger("migrate")->warn("{}: cannot capture: {}", name, failure);
      for (const auto& leg : legs) {
        services_.guard.unsilence(flow_of(leg.pcb));
        thaw_pcb(leg.pcb);
      }
      session->thaw();
      ++report_.failed;
      if (report_.error.empty()) report_.error = failure;
      record(session, legs, SessionOutcome::failed, failure);
      continue;
    }
    // The stream bytes this move carries (a session that could not be captured carries none).
    for (const auto& snapshot : snapshots)
      report_.snapshot_stream_bytes += snapshot.unacked.size() + snapshot.unsent.size() + snapshot.received.size();
    if (first) report_.first_stages.captured_ns = uv_hrtime();
    record(session, legs, SessionOutcome::failed, "not answered");  // until the target answers
    InFlight item{session, {}, clients, report_.sessions.size() - 1, false, frozen_ns, first};
    for (const auto& leg : legs) item.pcbs.push_back(leg.pcb);
    in_flight_.push_back(std::move(item));
    // One buffer from snapshots to socket: at a 4 MiB window every copy of it costs
    // milliseconds of the move (mostly first-touch page faults).
    std::vector<uint8_t> frame;
    frame.reserve(frame_bytes);
    begin_frame(FrameType::session, frame);
    append_session_header(session->kind(), legs.size(), frame);
    for (size_t i = 0; i < legs.size(); ++i) {
      std::optional<crypto::HandoverToken> token;
      if (policy_.handover && legs[i].role == LegRole::client)
        token = tokens_.try_emplace(clients[i], crypto::random_handover_token()).first->second;
      size_t length_at = begin_session_leg(legs[i].role, token, frame);
      wire::encode_snapshot(snapshots[i], frame);
      finish_session_leg(length_at, frame);
    }
    finish_frame(frame);
    if (first) report_.first_stages.encoded_ns = uv_hrtime();
    link.send_session(std::move(frame));
    uint64_t sent_ns = uv_hrtime();
    if (first) report_.first_stages.sent_ns = sent_ns;
    report_.capture_ms_max = std::max(report_.capture_ms_max, static_cast<double>(sent_ns - frozen_ns) / 1e6);
  }
  if (in_flight_.empty()) finish();
}

void Exporter::on_result(const SessionResult& result, uint64_t read_ns) {
  if (finished_) return;
  if (answered_ >= in_flight_.size()) {
    abandon("the target answered more sessions than were sent");
    return;
  }
  InFlight& item = in_flight_[answered_++];
  item.settled = true;
  if (item.first) report_.first_stages.answer_read_ns = read_ns != 0 ? read_ns : uv_hrtime();
  SessionReport& entry = report_.sessions[item.report_index];
  if (result.ok) {
    if (auto address = IpAddress::parse(result.text)) report_.new_address = *address;
    for (tcp_pcb* pcb : item.session->release_legs())
      if (pcb != nullptr) discard_frozen_pcb(pcb);
    note_thawed(item);
    if (services_.segment_mac != nullptr)
      for (const auto& leg : entry.legs) services_.segment_mac->forget(leg.flow);
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
  // The connections go on here, exactly where they were.
  SessionReport& entry = report_.sessions[item.report_index];
  for (size_t i = 0; i < item.pcbs.size(); ++i) {
    services_.guard.unsilence(entry.legs[i].flow);
    thaw_pcb(item.pcbs[i]);
  }
  item.session->thaw();
  note_thawed(item);
  entry.outcome = SessionOutcome::failed;
  entry.reason = reason;
  ++report_.failed;
  if (report_.error.empty()) report_.error = reason;
}

void Exporter::note_thawed(const InFlight& item) {
  uint64_t now = uv_hrtime();
  if (item.first) report_.first_stages.released_ns = now;
  report_.frozen_ms_max = std::max(report_.frozen_ms_max, static_cast<double>(now - item.frozen_ns) / 1e6);
}

void Exporter::abandon(const std::string& reason) {
  if (finished_) return;
  abandoned_ = true;
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
  release_held_output();
  if (report_.moved > 0) {
    std::vector<MovedConnection> moved;
    moved.reserve(report_.moved);
    for (const auto& item : in_flight_) {
      if (item.session != nullptr) continue;  // did not move
      const SessionReport& entry = report_.sessions[item.report_index];
      for (size_t i = 0; i < entry.legs.size(); ++i) {
        if (entry.legs[i].role != LegRole::client) continue;  // the new host tells an origin
        MovedConnection m{entry.legs[i].connection_id, entry.legs[i].flow, item.clients[i], std::nullopt};
        if (auto token = tokens_.find(item.clients[i]); token != tokens_.end()) m.token = token->second;
        moved.push_back(m);
      }
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
