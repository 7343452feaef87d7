#include "apps/proxy_session.hpp"

#include <algorithm>
#include <span>
#include <utility>

#include "apps/relay_replay.hpp"
#include "base/log.hpp"
#include "stack/connection_id.hpp"

namespace roam {

namespace {
// A send buffer that is full is refilled only once this much is free again (or all that
// is held fits): tcp_write walks the unsent queue, thousands of segments at a 4 MiB
// buffer, so a refill on every ACK would cost quadratic time (as in KernelSplice).
constexpr size_t refill_step = 128 * 1024;
// A drained direction keeps its buffer up to this size; a larger one is freed, so an
// idle session holds little.
constexpr size_t kept_capacity = 256 * 1024;

const char* leg_name(size_t leg) {
  return leg == ProxySession::client_leg ? "client" : "origin";
}
}  // namespace

ProxySession::ProxySession(Node& node, tcp_pcb* client, FinishedFn on_finished, Hooks hooks)
    : node_(node), on_finished_(std::move(on_finished)), hooks_(std::move(hooks)) {
  legs_[client_leg] = std::make_unique<TcpConnection>(client, this);
}

ProxySession::~ProxySession() {
  // Still live here only when the owner destroys the session before it ended (server
  // shutdown before the deferred close ran): the streams were cut short, say so.
  for (auto& leg : legs_) {
    if (!leg) continue;
    if (parked_import(leg->pcb()))
      leg->release();  // the importer's guard holds it (see end())
    else
      leg->abort();
  }
}

void ProxySession::attach_origin(std::unique_ptr<TcpConnection> origin) {
  if (ending_) return;  // the unique_ptr's destructor closes the half-open leg
  origin->set_handler(this);
  legs_[origin_leg] = std::move(origin);
}

void ProxySession::fail_origin(const std::string& why) {
  if (ending_) return;
  if (hooks_.on_origin_failed) hooks_.on_origin_failed(why);
  end(true);  // a reset, never a clean FIN: the client must not mistake it for an empty reply
}

std::unique_ptr<ProxySession> ProxySession::import(Node& node, std::vector<ImportedLeg> legs,
                                                   FinishedFn on_finished, std::string& error) {
  // Checked before any pcb is touched: on failure the importer still owns them as they were.
  if (legs.size() != 2 || legs[client_leg].role != LegRole::client || legs[origin_leg].role != LegRole::origin) {
    error = "proxy: expected a client leg and an origin leg";
    return nullptr;
  }
  auto moved = decode_proxy_move_state(legs[client_leg].app_state);
  if (!moved || !legs[origin_leg].app_state.empty()) {
    error = "proxy app state: expected version 1 or 3";
    return nullptr;
  }
  auto session = std::make_unique<ProxySession>(node, legs[client_leg].pcb, std::move(on_finished));
  session->offsets_known_ = moved->has_value();
  if (*moved) {
    session->down_ = (*moved)->down;
    session->up_ = (*moved)->up;
  }
  session->legs_[origin_leg] = std::make_unique<TcpConnection>(legs[origin_leg].pcb, session.get());
  session->origin_connected_ = true;
  session->flows_[client_leg].held = std::move(legs[client_leg].received);
  session->flows_[origin_leg].held = std::move(legs[origin_leg].received);
  // Resumes on the next loop turn, once the importer registered it everywhere; the held
  // bytes go to the other leg first, data arriving meanwhile queues behind them.
  session->frozen_ = true;
  session->resume_later();
  return session;
}

std::unique_ptr<ProxySession> ProxySession::import_resumed(Node& node, tcp_pcb* client, const ProxyResumeState& state,
                                                           FinishedFn on_finished, Hooks hooks) {
  auto session = std::make_unique<ProxySession>(node, client, std::move(on_finished), std::move(hooks));
  session->down_ = state.down;
  session->up_ = state.up;
  session->resume_request_ = relay::encode_resume_request(state);
  session->awaiting_answer_ = true;
  session->frozen_ = true;
  session->resume_later();
  return session;
}

std::vector<SessionLeg> ProxySession::legs() const {
  std::vector<SessionLeg> out(2);
  out[client_leg] = {legs_[client_leg] ? legs_[client_leg]->pcb() : nullptr, LegRole::client};
  out[origin_leg] = {legs_[origin_leg] ? legs_[origin_leg]->pcb() : nullptr, LegRole::origin};
  return out;
}

bool ProxySession::movable() const {
  if (ending_ || !ready() || !legs_[client_leg]->alive() || !legs_[origin_leg]->alive()) return false;
  // A half-closed stream is not moved: one leg would be past ESTABLISHED / CLOSE_WAIT.
  return !flows_[client_leg].eof && !flows_[origin_leg].eof;
}

StayReason ProxySession::stay_reason() const {
  if (!ending_ && !ready()) return {"origin not up", "its origin leg is not connected yet"};
  if (!ending_ && (flows_[client_leg].eof || flows_[origin_leg].eof))
    return {"half-closed", "one direction is closed (half-close): its legs are past ESTABLISHED"};
  return {"ending", "its session is ending"};
}

void ProxySession::freeze() {
  frozen_ = true;
  resume_pending_ = false;  // an imported session not yet resumed: thaw() resumes it
}

void ProxySession::thaw() {
  frozen_ = false;
  schedule_pump();  // writes what was held meanwhile, and what arrived
}

std::vector<uint8_t> ProxySession::leg_received(size_t leg) const {
  const Flow& flow = flows_.at(leg);
  return {flow.held.begin() + static_cast<std::ptrdiff_t>(flow.offset), flow.held.end()};
}

std::vector<uint8_t> ProxySession::leg_app_state(size_t leg) const {
  if (leg == client_leg) return encode_proxy_move_state(offsets());
  return {};
}

std::optional<ProxyStreamOffsets> ProxySession::offsets() const {
  if (!offsets_known_) return std::nullopt;
  return ProxyStreamOffsets{down_, up_};
}

std::optional<ProxyResumeState> ProxySession::resume_state() const {
  if (!movable() || !offsets_known_ || down_ >= max_stream_offset || up_ >= max_stream_offset) return std::nullopt;
  const tcp_pcb* client = legs_[client_leg]->pcb();
  const tcp_pcb* origin = legs_[origin_leg]->pcb();
  if (client == nullptr || origin == nullptr || client->refused_data != nullptr) return std::nullopt;
  const uint64_t relayed = connection_id(origin);
  if (relayed == 0) return std::nullopt;
  return ProxyResumeState{relayed, down_, up_};
}

std::optional<CheckpointSource> ProxySession::checkpoint_source() const {
  auto state = resume_state();
  if (!state) return std::nullopt;
  return CheckpointSource{legs_[client_leg]->pcb(), encode_proxy_resume_state(*state)};
}

std::vector<tcp_pcb*> ProxySession::release_legs() {
  ending_ = true;
  resume_pending_ = false;
  on_finished_ = nullptr;  // moved away: the owner drops it, it did not end
  std::vector<tcp_pcb*> out(2, nullptr);
  for (size_t i = 0; i < 2; ++i)
    if (legs_[i]) out[i] = legs_[i]->release();
  return out;
}

void ProxySession::close() {
  // A FIN only when both streams already ended truthfully; bytes still held or a stream
  // still open would otherwise end as if complete.
  bool complete = flows_[client_leg].fin_forwarded && flows_[origin_leg].fin_forwarded;
  end(!complete);
}

size_t ProxySession::leg_of(const TcpConnection& connection) const {
  return &connection == legs_[client_leg].get() ? client_leg : origin_leg;
}

void ProxySession::on_connected(TcpConnection& connection) {
  if (ending_ || leg_of(connection) != origin_leg) return;
  origin_connected_ = true;
  if (hooks_.on_origin_connected) hooks_.on_origin_connected(connection.pcb());
  if (!resume_request_.empty()) {
    // Before any client byte: the relay reads exactly these first (PROTOCOL.md 14.8.4).
    size_t written = connection.write(resume_request_);
    if (written != resume_request_.size()) {
      fail_origin("cannot send RELAY_RESUME");
      return;
    }
    resume_request_.clear();
    connection.flush();
  }
  schedule_pump();  // what the client sent meanwhile
}

void ProxySession::on_data(TcpConnection& connection, PbufPtr data) {
  if (ending_) return;  // dropped: the connection is going away
  const size_t from = leg_of(connection);
  if (from == origin_leg && awaiting_answer_) {
    take_resume_answer(connection, std::move(data));
    return;
  }
  Flow& flow = flows_[from];
  if (from == client_leg) up_ += data->tot_len;
  if (flow.offset == flow.held.size()) {
    flow.held.clear();
    flow.offset = 0;
  }
  append_pbuf(flow.held, *data);
  schedule_pump();
}

void ProxySession::take_resume_answer(TcpConnection& origin, PbufPtr data) {
  append_pbuf(answer_, *data);
  if (answer_.size() < relay::resume_answer_bytes) return;
  std::span<const uint8_t, relay::resume_answer_bytes> head(answer_.data(), relay::resume_answer_bytes);
  auto answer = relay::decode_resume_answer(head);
  if (!answer || !answer->resumed()) {
    logger("app")->warn("proxy session: the relay refused to resume it ({}); the client's connection is reset",
                        answer ? relay::resume_reason_name(answer->reason) : "malformed answer");
    fail_origin("relay resume refused");
    return;
  }
  logger("app")->info("proxy session resumed at the relay (down offset {}, up offset {}, {} up bytes it had)", down_,
                      up_, answer->skip);
  awaiting_answer_ = false;
  origin.consumed(relay::resume_answer_bytes);  // never forwarded: reopen the window now
  Flow& flow = flows_[origin_leg];
  flow.held.insert(flow.held.end(), answer_.begin() + relay::resume_answer_bytes, answer_.end());
  std::vector<uint8_t>().swap(answer_);
  schedule_pump();
}

void ProxySession::on_remote_closed(TcpConnection& connection) {
  if (ending_) return;
  flows_[leg_of(connection)].eof = true;
  schedule_pump();
}

void ProxySession::on_sent(TcpConnection& connection, size_t) {
  if (ending_) return;
  const Flow& toward = flows_[1 - leg_of(connection)];
  if (toward.remaining() > 0 &&
      connection.send_space() >= std::min(toward.remaining(), connection.send_step(refill_step))) {
    schedule_pump();
    return;
  }
  maybe_finish();  // our FIN may just have been acknowledged
}

void ProxySession::on_error(TcpConnection& connection, err_t error) {
  if (ending_) return;
  size_t leg = leg_of(connection);
  if (leg == origin_leg && !origin_connected_) {
    // lwIP gives up on a SYN after TCP_SYNMAXRTX retries, 3 s apart (about 20 s).
    if (error == ERR_RST)
      fail_origin("refused the origin leg (reset)");
    else if (error == ERR_ABRT)
      fail_origin("no answer to the origin leg's SYNs (unreachable)");
    else
      fail_origin(std::string("the origin leg failed to open: ") + lwip_error_name(error));
    return;
  }
  // ERR_CLSD: our FIN was acknowledged after the peer's (LAST_ACK done): this leg ended
  // cleanly both ways; the session ends once the other leg has too.
  if (error == ERR_CLSD && flows_[leg].eof && flows_[1 - leg].fin_forwarded) {
    maybe_finish();
    return;
  }
  logger("app")->debug("proxy session: {} leg failed ({}): resetting the other", leg_name(leg),
                       lwip_error_name(error));
  end(true);
}

void ProxySession::schedule_pump() {
  if (pump_scheduled_ || ending_) return;
  pump_scheduled_ = true;
  // Once per loop turn, after the links' batch of packets: one write per direction for
  // everything that arrived, outside any lwIP callback.
  node_.defer([this, lifetime = std::weak_ptr<bool>(lifetime_)] {
    if (lifetime.expired()) return;
    pump_scheduled_ = false;
    pump();
  });
  node_.kick();
}

void ProxySession::pump() {
  if (frozen_ || ending_ || !ready()) return;
  forward(client_leg);
  forward(origin_leg);
  maybe_finish();
}

void ProxySession::forward(size_t from) {
  Flow& flow = flows_[from];
  TcpConnection* source = legs_[from].get();
  TcpConnection* sink = legs_[1 - from].get();
  if (sink == nullptr || !sink->alive()) return;
  bool wrote = false;
  if (flow.remaining() > 0 && sink->send_space() >= std::min(flow.remaining(), sink->send_step(refill_step))) {
    size_t taken = sink->write({flow.held.data() + flow.offset, flow.remaining()});
    flow.offset += taken;
    if (from == origin_leg) down_ += taken;  // now behind the client leg's snd_lbb
    wrote = taken > 0;
    // Only now may the source send more: the window reopens by what the sink took.
    if (taken > 0 && source != nullptr) source->consumed(taken);
  }
  if (flow.remaining() == 0) {
    if (flow.held.capacity() > kept_capacity) {
      std::vector<uint8_t>().swap(flow.held);
    } else {
      flow.held.clear();
    }
    flow.offset = 0;
    if (flow.eof && !flow.fin_forwarded) {
      flow.fin_forwarded = true;
      sink->shutdown_write();  // sends the FIN after everything queued
    }
  } else if (flow.offset >= kept_capacity && flow.offset * 2 >= flow.held.size()) {
    // Keeps the buffer from growing without bound while the window keeps it busy.
    flow.held.erase(flow.held.begin(), flow.held.begin() + static_cast<std::ptrdiff_t>(flow.offset));
    flow.offset = 0;
  }
  if (wrote) sink->flush();
}

void ProxySession::maybe_finish() {
  if (ending_) return;
  if (!flows_[client_leg].fin_forwarded || !flows_[origin_leg].fin_forwarded) return;
  for (const auto& leg : legs_)
    if (leg && !leg->everything_acknowledged()) return;  // on_sent or on_error comes back
  end(false);
}

void ProxySession::end(bool reset) {
  if (ending_) return;
  ending_ = true;
  resume_pending_ = false;
  // Lets go of the pcbs outside any lwIP callback that may be running now.
  node_.defer([this, reset, lifetime = std::weak_ptr<bool>(lifetime_)] {
    if (lifetime.expired()) return;
    for (auto& leg : legs_) {
      if (!leg) continue;
      if (parked_import(leg->pcb())) {
        // Imported here and its peer has not arrived (an origin not yet told): the
        // importer's guard still holds this pcb, so it is not ours to free.
        leg->release();
        continue;
      }
      if (reset)
        leg->abort();
      else
        leg->close();
    }
    if (auto notify = std::exchange(on_finished_, nullptr)) notify(this);
  });
  node_.kick();
}

bool ProxySession::parked_import(const tcp_pcb* pcb) {
  // An import always has an id; a leg still opening (SYN_SENT) has none yet.
  uint64_t id = pcb != nullptr ? connection_id(pcb) : 0;
  if (id == 0 || pcb->state == TIME_WAIT || pcb->state == CLOSED) return false;
  // Every pcb in lwIP's active list is in the connection id index; a parked import is not.
  for (const tcp_pcb* registered : find_pcbs_by_connection_id(id))
    if (registered == pcb) return false;
  return true;
}

void ProxySession::resume_later() {
  resume_pending_ = true;
  node_.defer([this, lifetime = std::weak_ptr<bool>(lifetime_)] {
    if (lifetime.expired() || !resume_pending_) return;
    resume_pending_ = false;
    thaw();
  });
  node_.kick();
}

void add_proxy_session_kind(SessionKinds& kinds, Node& node, OpenResumedOrigin open_resumed,
                            ProxySession::Hooks resumed_hooks) {
  kinds.add("proxy", [&node, open_resumed, resumed_hooks](std::vector<ImportedLeg> legs,
                                                          MovableSession::FinishedFn on_finished,
                                                          std::string& error) -> std::unique_ptr<MovableSession> {
    if (legs.size() == 1 && legs[0].role == LegRole::client) {
      // A checkpoint's rebuild (PROTOCOL.md 14.8.5): the client leg alone.
      auto state = decode_proxy_resume_state(legs[0].app_state);
      if (!state || !open_resumed || !legs[0].received.empty()) {
        error = "proxy: a lone client leg needs a proxy checkpoint state and a relay to resume at";
        return nullptr;
      }
      auto session = ProxySession::import_resumed(node, legs[0].pcb, *state, std::move(on_finished), resumed_hooks);
      open_resumed(*session);
      return session;
    }
    return ProxySession::import(node, std::move(legs), std::move(on_finished), error);
  });
}

}  // namespace roam
