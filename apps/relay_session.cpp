#include "apps/relay_session.hpp"

#include "base/log.hpp"
#include "stack/connection_id.hpp"
#include "stack/pcb_owner.hpp"

namespace roam {

RelaySession::RelaySession(Node& node, tcp_pcb* carrier, const sockaddr* backend, FinishedFn on_finished,
                           RelayResumeService* replay)
    : on_finished_(std::move(on_finished)), replay_(replay) {
  splice_ = std::make_unique<KernelSplice>(node, [this](KernelSplice*) {
    if (replay_ != nullptr) replay_->remove(id_, this);
    replay_ = nullptr;
    if (on_finished_) on_finished_(this);
  });
  if (replay_ != nullptr) {
    buffer_ = std::make_unique<relay::ReplayBuffer>(replay_->options().replay_bytes);
    id_ = connection_id(carrier);
    owner_ = pcb_owner(carrier);
    KernelSplice::Replay hooks;
    hooks.to_carrier = [this](std::span<const uint8_t> bytes) { buffer_->append(bytes); };
    hooks.from_carrier = [this](size_t bytes) { received_ += bytes; };
    hooks.carrier_lost = [this] { on_carrier_lost(); };
    splice_->set_replay(std::move(hooks));
    if (id_ != 0) replay_->add(id_, this);
  }
  splice_->adopt_carrier(std::make_unique<TcpConnection>(carrier, splice_.get()), true);
  splice_->connect_kernel(backend);
}

RelaySession::~RelaySession() {
  if (replay_ != nullptr) replay_->remove(id_, this);
}

StayReason RelaySession::stay_reason() const {
  return {"relay", "its backend is a kernel socket on this host (run it behind `proxy` mode to move it)"};
}

relay::RelayedView RelaySession::view(const std::optional<OwnerKey>& new_owner,
                                      const RelayResumeService::PoolOf& pool_of) const {
  relay::RelayedView v;
  v.base = buffer_ ? buffer_->base() : 0;
  v.taken = buffer_ ? buffer_->taken() : 0;
  v.received = received_;
  v.owner_allowed = relay::resume_owner_allowed(owner_, new_owner, pool_of);
  return v;
}

void RelaySession::resume(uint64_t new_id, const std::optional<OwnerKey>& new_owner,
                          std::unique_ptr<TcpConnection> carrier, uint64_t down, uint64_t skip,
                          std::span<const uint8_t> early, bool early_fin) {
  if (replay_ == nullptr || !buffer_) return;
  auto replay = buffer_->copy_from(down);
  if (!replay) return;  // decided just before: cannot happen
  replay_->remove(id_, this);
  id_ = new_id;
  owner_ = new_owner;
  linger_until_ = 0;
  replay_->add(id_, this);
  logger("app")->info("relayed connection resumed on connection {}: {} bytes re-sent from offset {}, {} up bytes dropped",
                      new_id, replay->size(), down, skip);
  splice_->replace_carrier(std::move(carrier), std::move(*replay), skip, early, early_fin);
}

void RelaySession::on_carrier_lost() {
  if (replay_ == nullptr) return;
  linger_until_ = replay_->linger_deadline();
  logger("app")->info("relayed connection {}: carrier lost; the backend connection waits {} ms for a resume", id_,
                      replay_->options().linger_ms);
}

}  // namespace roam
