#include "apps/relay_resume_service.hpp"

#include <span>
#include <string>
#include <utility>

#include "apps/relay_session.hpp"
#include "base/config_error.hpp"
#include "base/log.hpp"
#include "stack/connection_id.hpp"
#include "stack/pcb_owner.hpp"

namespace roam {

namespace {
constexpr uint64_t request_timeout_ms = 5000;
constexpr uint64_t sweep_interval_ms = 250;
}  // namespace

RelayResumeService::RelayResumeService(Node& node, RelayReplayOptions options, PoolOf pool_of,
                                       CounterRegistry& registry)
    : node_(node), options_(options), pool_of_(std::move(pool_of)) {
  auto listening = TcpListener::listen(options_.port, [this](tcp_pcb* pcb) { return accept(pcb); });
  if (!listening) throw ConfigError("--relay-replay-port: " + listening.error());
  listener_ = std::move(listening.value());
  registry.add("relay", "relay_resumes", &counters_.requests);
  registry.add("relay", "relay_resumes_done", &counters_.resumed);
  registry.add("relay", "relay_resumes_truncated", &counters_.truncated);
  registry.add("relay", "relay_lingered_out", &counters_.lingered_out);
  for (uint8_t reason = 1; reason <= relay::max_resume_reason; ++reason) {
    std::string name = relay::resume_reason_name(static_cast<relay::ResumeReason>(reason));
    for (char& c : name)
      if (c == ' ') c = '_';
    registry.add("relay", "relay_resume_refused_" + name, &counters_.refused[reason]);
  }
  registry.add_gauge("relay", "relay_replaying", [this] { return static_cast<uint64_t>(relayed_.size()); });
  start_repeating_timer<&RelayResumeService::sweep>(sweep_timer_, node_.loop(), this, sweep_interval_ms, false);
  logger("app")->info("relay replay: the last {} bytes of each relayed connection are kept; resumes on port {}",
                      options_.replay_bytes, options_.port);
}

RelayResumeService::~RelayResumeService() { close(); }

void RelayResumeService::close() {
  if (sweep_timer_.valid()) sweep_timer_.close();
  if (listener_) listener_->close();
  for (auto& [raw, gate] : gates_)
    if (gate->carrier && gate->carrier->alive()) gate->carrier->abort();
}

void RelayResumeService::add(uint64_t id, RelaySession* session) { relayed_[id] = session; }

void RelayResumeService::remove(uint64_t id, const RelaySession* session) {
  auto it = relayed_.find(id);
  if (it != relayed_.end() && it->second == session) relayed_.erase(it);
}

bool RelayResumeService::accept(tcp_pcb* pcb) {
  auto gate = std::make_unique<Gate>();
  gate->service = this;
  gate->deadline_ms = uv_now(node_.loop()) + request_timeout_ms;
  gate->carrier = std::make_unique<TcpConnection>(pcb, gate.get());
  Gate* raw = gate.get();
  gates_.emplace(raw, std::move(gate));
  return true;
}

void RelayResumeService::Gate::on_data(TcpConnection&, PbufPtr data) {
  if (done && !deciding) return;  // refused or gone: dropped
  // Kept while the decision is pending too: up bytes that follow the request belong to
  // the client's stream and are handed to the relayed connection with the carrier.
  append_pbuf(bytes, *data);
  if (deciding || bytes.size() < relay::resume_request_bytes) return;
  done = true;
  deciding = true;
  // Decided outside lwIP's callback: the decision may reset another carrier.
  service->node_.defer([service = service, self = this] {
    if (service->gates_.count(self) != 0) service->decide(*self);
  });
  service->node_.kick();
}

void RelayResumeService::Gate::on_remote_closed(TcpConnection&) {
  if (deciding) {
    fin = true;  // after the request: the end of the client's up stream, handed on with it
    return;
  }
  if (done) return;
  done = true;
  ++service->counters_.truncated;
  service->finish(*this);
}

void RelayResumeService::Gate::on_error(TcpConnection&, err_t) {
  if (done) return;
  done = true;
  ++service->counters_.truncated;
  service->finish(*this);
}

void RelayResumeService::decide(Gate& gate) {
  gate.deciding = false;
  ++counters_.requests;
  std::span<const uint8_t, relay::resume_request_bytes> head(gate.bytes.data(), relay::resume_request_bytes);
  auto request = relay::decode_resume_request(head);
  if (!request) return refuse(gate, request.error());
  tcp_pcb* pcb = gate.carrier->pcb();
  if (pcb == nullptr) {  // gone meanwhile
    ++counters_.truncated;
    return finish(gate);
  }
  auto it = relayed_.find(request->relayed_id);
  RelaySession* session = it != relayed_.end() ? it->second : nullptr;
  const std::optional<OwnerKey> new_owner = pcb_owner(pcb);
  std::optional<relay::RelayedView> view;
  if (session != nullptr) view = session->view(new_owner, pool_of_);
  const relay::ResumeAnswer answer = relay::decide_resume(*request, view ? &*view : nullptr);
  if (!answer.resumed()) return refuse(gate, answer.reason);
  ++counters_.resumed;
  // The request's bytes are taken; what followed it is the client's up stream.
  gate.carrier->consumed(relay::resume_request_bytes);
  auto reply = relay::encode_resume_answer(answer);
  gate.carrier->write(reply);
  std::vector<uint8_t> early(gate.bytes.begin() + relay::resume_request_bytes, gate.bytes.end());
  const uint64_t new_id = connection_id(pcb);
  const bool fin = gate.fin;
  auto carrier = std::move(gate.carrier);
  gates_.erase(&gate);  // `gate` is gone from here on
  session->resume(new_id, new_owner, std::move(carrier), request->down, answer.skip, early, fin);
}

void RelayResumeService::refuse(Gate& gate, relay::ResumeReason reason) {
  ++counters_.refused[static_cast<size_t>(reason)];
  uint64_t suppressed = 0;
  if (refusal_log_.allow(suppressed))
    logger("app")->warn("relay resume refused: {} ({} more not logged)", relay::resume_reason_name(reason),
                        suppressed);
  if (gate.carrier && gate.carrier->alive()) {
    auto reply = relay::encode_resume_answer({reason, 0});
    gate.carrier->write(reply);
    gate.carrier->consumed(gate.bytes.size());
    gate.carrier->close();  // a FIN after the answer
  }
  finish(gate);
}

void RelayResumeService::finish(Gate& gate) {
  Gate* raw = &gate;
  node_.defer([this, raw] {
    auto it = gates_.find(raw);
    if (it == gates_.end()) return;
    if (it->second->carrier && it->second->carrier->alive()) it->second->carrier->abort();
    gates_.erase(it);
  });
  node_.kick();
}

void RelayResumeService::sweep() {
  const uint64_t now = uv_now(node_.loop());
  for (auto& [raw, gate] : gates_) {
    if (!gate->done && now >= gate->deadline_ms) {
      gate->done = true;
      ++counters_.truncated;
      finish(*gate);
    }
  }
  std::vector<RelaySession*> expired;
  for (auto& [id, session] : relayed_)
    if (session->linger_until() != 0 && now >= session->linger_until()) expired.push_back(session);
  for (RelaySession* session : expired) {
    ++counters_.lingered_out;
    logger("app")->info("relayed connection: no resume within the linger time; its backend connection is reset");
    session->linger_out();
  }
}

}  // namespace roam
