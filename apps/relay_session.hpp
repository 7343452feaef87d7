// RelaySession: one roam-server relay session (`relay --backend`), a carrier spliced to a
// kernel TCP connection to the backend, as the move engine sees it. It sits in the server's
// session table so that `roamctl status` lists it and `roamctl migrate` counts it, but it
// never moves: its backend side is a kernel socket of this host, which no snapshot can
// carry (the proxy topology, DESIGN.md section 2, moves both legs instead). The exporter
// therefore never freezes or releases it. Loop thread only.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <vector>

#include "apps/kernel_splice.hpp"
#include "stack/migrate/movable_session.hpp"
#include "stack/node.hpp"

namespace roam {

class RelaySession final : public MovableSession {
 public:
  // Takes an accepted carrier and starts connecting to `backend`. `on_finished` runs once
  // both sides are closed.
  RelaySession(Node& node, tcp_pcb* carrier, const sockaddr* backend, FinishedFn on_finished);

  const char* kind() const override { return "relay"; }
  std::vector<SessionLeg> legs() const override { return {SessionLeg{splice_->carrier_pcb(), LegRole::client}}; }
  bool movable() const override { return false; }
  StayReason stay_reason() const override;
  // Never called for a session that is not movable: nothing to do.
  void freeze() override {}
  void thaw() override {}
  std::vector<uint8_t> leg_received(size_t) const override { return {}; }
  std::vector<uint8_t> leg_app_state(size_t) const override { return {}; }
  // Gives nothing up: its carrier stays spliced here.
  std::vector<tcp_pcb*> release_legs() override { return {nullptr}; }
  void close() override { splice_->close(); }

 private:
  FinishedFn on_finished_;
  std::unique_ptr<KernelSplice> splice_;
};

}  // namespace roam
