// RelaySession: one roam-server relay session (`relay --backend`), a carrier spliced to a
// kernel TCP connection to the backend, as the move engine sees it. It sits in the server's
// session table so that `roamctl status` lists it and `roamctl migrate` counts it, but it
// never moves: its backend side is a kernel socket of this host, which no snapshot can
// carry (the proxy topology, DESIGN.md section 2, moves both legs instead). The exporter
// therefore never freezes or releases it. Loop thread only.
//
// With a RelayResumeService (--relay-replay-bytes, PROTOCOL.md 14.8.3) it keeps the last
// bytes it read from the backend and counts what it handed to it, and a lost carrier
// leaves the backend connection open for the linger time: a next proxy may resume it on a
// new carrier (resume), from any offset still in the buffer.
#pragma once

#include <sys/socket.h>

#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "apps/kernel_splice.hpp"
#include "apps/relay_replay.hpp"
#include "apps/relay_resume_service.hpp"
#include "stack/migrate/movable_session.hpp"
#include "stack/node.hpp"

namespace roam {

class RelaySession final : public MovableSession {
 public:
  // Takes an accepted carrier and starts connecting to `backend`. `on_finished` runs once
  // both sides are closed. `replay`: keep what is relayed for a resume (nullptr: off).
  RelaySession(Node& node, tcp_pcb* carrier, const sockaddr* backend, FinishedFn on_finished,
               RelayResumeService* replay = nullptr);
  ~RelaySession() override;
  RelaySession(const RelaySession&) = delete;
  RelaySession& operator=(const RelaySession&) = delete;

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

  // Replay only. What a RELAY_RESUME is decided against; the owner check uses `pool_of`.
  relay::RelayedView view(const std::optional<OwnerKey>& new_owner,
                          const RelayResumeService::PoolOf& pool_of) const;
  // Goes on over `carrier` (connection id `new_id`, owner `new_owner`): the down bytes
  // from `down` first, the first `skip` up bytes it delivers dropped, `early` the up bytes
  // it delivered after the request (`early_fin`: then its FIN). The caller decided (decide_resume) just before.
  void resume(uint64_t new_id, const std::optional<OwnerKey>& new_owner, std::unique_ptr<TcpConnection> carrier,
              uint64_t down, uint64_t skip, std::span<const uint8_t> early, bool early_fin);
  // Loop time (ms) at which this connection, its carrier lost, is reset; 0 while it has one.
  uint64_t linger_until() const { return linger_until_; }
  // The linger time passed without a resume: resets the backend connection.
  void linger_out() {
    linger_until_ = 0;
    splice_->close();
  }

 private:
  void on_carrier_lost();

  FinishedFn on_finished_;
  std::unique_ptr<KernelSplice> splice_;
  RelayResumeService* replay_ = nullptr;
  std::unique_ptr<relay::ReplayBuffer> buffer_;
  uint64_t received_ = 0;  // up bytes handed to the backend (PROTOCOL.md 14.8.1)
  uint64_t id_ = 0;        // the carrier's connection id: the name in the service's table
  std::optional<OwnerKey> owner_;
  uint64_t linger_until_ = 0;
};

}  // namespace roam
