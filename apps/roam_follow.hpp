// roam-client's side of proactive roaming (seed 002; PROTOCOL.md 13.4): applies the
// ROAM_UPDATEs its trusted servers send (control::RoamTracker checks them: replayed,
// stale, forged, too-far and inconsistent ones change nothing and are counted), logs the
// schedule it learned and where the active server is, and exposes the counters (group
// roam, --metrics). It does not redirect connections yet: the client keeps using the
// servers its forwards name. The node's loop thread.
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

 private:
  control::RoamTracker tracker_;
  RateLimitedLog refusal_log_;
  std::optional<control::RoamServer> last_active_;
  std::optional<uint64_t> last_granted_;
};

}  // namespace roam
