// roam-client's side of proactive roaming (seed 002; PROTOCOL.md 13.4): applies the
// ROAM_UPDATEs its trusted servers send (control::RoamTracker checks them: replayed,
// stale, forged, too-far and inconsistent ones change nothing and are counted), logs the
// schedule it learned and where the active server is, and exposes the counters (group
// roam, --metrics). New carriers to a pool member go to the member active now
// (dial_target, PROTOCOL.md 13.6); established ones follow the moves by ACM. The node's
// loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <span>
#include <vector>

#include "base/counters.hpp"
#include "base/ip_address.hpp"
#include "base/rate_limited_log.hpp"
#include "base/uv_handle.hpp"
#include "stack/control/roam_tracker.hpp"

namespace roam {

class RoamFollow {
 public:
  // `loop` (may be null: when_scheduled never waits) runs the first-update wait's timer.
  RoamFollow(CounterRegistry& registry, uv_loop_t* loop);
  ~RoamFollow();
  RoamFollow(const RoamFollow&) = delete;
  RoamFollow& operator=(const RoamFollow&) = delete;
  // Drops the waiters unrun and stops the timer (the client shuts down).
  void close();
  void on_update(const IpAddress& server, const control::RoamUpdate& update);
  // SERVER, a pool member, has no update to give (ERROR 3: its pool has not started, or its
  // chain ended): logged and counted; its carriers dial as configured at once.
  void on_unavailable(const IpAddress& server, const std::string& why);
  // The schedule covers now: a dial to a member goes to the active one.
  bool scheduled_now();
  control::RoamTracker& tracker() { return tracker_; }
  // Where a new carrier for SERVER:PORT goes now: the active member, when SERVER is a
  // member of the pool and the schedule covers now (a member's port as the pool names it;
  // a different port on a member's address keeps its port); otherwise nullopt (dial
  // SERVER:PORT as configured). Counted as roam_dials_redirected / roam_dials_unscheduled.
  // Runs `then` at once (deferred) unless SERVER announced pool membership in its HELLO
  // (`announced`: capability_roam_pool) and the client has no schedule covering now (it
  // knows no pool yet, or it missed updates until its key ran out, past E_t): then once
  // the schedule covers now, or after first_update_wait_ms (not again for a member that
  // once let it expire or said it has no schedule). A member sends its ROAM_UPDATE right
  // after the channel is established; a carrier dialed in between would go to the
  // configured member, maybe a standby one that drops it. Never runs inside this call or
  // on_update.
  void when_scheduled(const IpAddress& server, bool announced, std::function<void()> then);
  static constexpr uint64_t first_update_wait_ms = 250;
  // `count` false: a second look at the same dial (not counted again).
  std::optional<control::RoamServer> dial_target(const IpAddress& server, uint16_t port, bool count = true);
  // Where a connection of the pool member DEAD (silent: taken for dead) is resumed from its
  // checkpoint (PROTOCOL.md 14.5): the member active now per the schedule, or, when that is
  // DEAD itself or one of AVOID (members the client left or that refused: ResumeAvoidance),
  // the first member of the schedule from now on that is neither (`next_epoch` true).
  // nullopt when DEAD is no member of the pool, the schedule does not cover now, or it
  // names only those up to its end (at most takeover_epochs looked at).
  struct TakeoverTarget {
    control::RoamServer server;
    bool next_epoch = false;
  };
  std::optional<TakeoverTarget> takeover_target(const IpAddress& dead, std::span<const IpAddress> avoid = {});
  static constexpr int takeover_epochs = 64;

 private:
  control::RoamTracker tracker_;
  RateLimitedLog refusal_log_;
  std::optional<control::RoamServer> last_active_;
  std::optional<uint64_t> last_granted_;
  static void on_timer(uv_timer_t* timer) noexcept;
  void run_waiters(bool all);
  struct Waiter {
    IpAddress server;
    uint64_t deadline_ms = 0;  // loop time
    bool waits = false;        // for a first pool item (else: only deferred)
    std::function<void()> then;
  };
  uv_loop_t* loop_;
  UvHandle<uv_timer_t> timer_;
  std::vector<Waiter> waiters_;
  std::vector<IpAddress> silent_servers_;  // sent no pool item within the wait once
  uint64_t dials_redirected_ = 0;   // a pool member's carrier sent to the active member
  uint64_t dials_unscheduled_ = 0;  // a pool member's carrier dialed as configured: no schedule now
  uint64_t updates_unavailable_ = 0;  // a member said it has no schedule to give (ERROR 3)
};

}  // namespace roam
