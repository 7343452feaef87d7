// roam-client's side of proactive roaming (seed 002; PROTOCOL.md 13.4): applies the
// ROAM_UPDATEs its trusted servers send (control::RoamTracker checks them: replayed,
// stale, forged, too-far and inconsistent ones change nothing and are counted), logs the
// schedule it learned and where the active server is, and exposes the counters (group
// roam, --metrics). New carriers to a pool member go to the member active now
// (dial_target, PROTOCOL.md 13.6); established ones follow the moves by ACM. The node's
// loop thread.
#pragma once

#include <cstdint>
#include <optional>

#include "base/counters.hpp"
#include "base/ip_address.hpp"
#include "base/rate_limited_log.hpp"
#include "stack/control/roam_tracker.hpp"

namespace roam {

class RoamFollow {
 public:
  explicit RoamFollow(CounterRegistry& registry);
  void on_update(const IpAddress& server, const control::RoamUpdate& update);
  control::RoamTracker& tracker() { return tracker_; }
  // Where a new carrier for SERVER:PORT goes now: the active member, when SERVER is a
  // member of the pool and the schedule covers now (a member's port as the pool names it;
  // a different port on a member's address keeps its port); otherwise nullopt (dial
  // SERVER:PORT as configured). Counted as roam_dials_redirected / roam_dials_unscheduled.
  // `count` false: a second look at the same dial (not counted again).
  std::optional<control::RoamServer> dial_target(const IpAddress& server, uint16_t port, bool count = true);

 private:
  control::RoamTracker tracker_;
  RateLimitedLog refusal_log_;
  std::optional<control::RoamServer> last_active_;
  std::optional<uint64_t> last_granted_;
  uint64_t dials_redirected_ = 0;   // a pool member's carrier sent to the active member
  uint64_t dials_unscheduled_ = 0;  // a pool member's carrier dialed as configured: no schedule now
};

}  // namespace roam
