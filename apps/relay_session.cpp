#include "apps/relay_session.hpp"

namespace roam {

RelaySession::RelaySession(Node& node, tcp_pcb* carrier, const sockaddr* backend, FinishedFn on_finished)
    : on_finished_(std::move(on_finished)) {
  splice_ = std::make_unique<KernelSplice>(node, [this](KernelSplice*) {
    if (on_finished_) on_finished_(this);
  });
  splice_->adopt_carrier(std::make_unique<TcpConnection>(carrier, splice_.get()), true);
  splice_->connect_kernel(backend);
}

StayReason RelaySession::stay_reason() const {
  return {"relay", "its backend is a kernel socket on this host (run it behind `proxy` mode to move it)"};
}

}  // namespace roam
