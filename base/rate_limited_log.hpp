// RateLimitedLog: at most one line per interval for a kind of event an attacker can repeat
// at will (forged control frames, refused ACMs), with how many were suppressed since the
// last line. Counters keep the exact numbers; the log only says that it is happening.
// Loop thread only.
#pragma once

#include <chrono>
#include <cstdint>

namespace roam {

class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::chrono::milliseconds interval = std::chrono::seconds(5)) : interval_(interval) {}

  // True when a line may be written now; `suppressed` says how many were skipped before it.
  bool allow(uint64_t& suppressed) {
    auto now = std::chrono::steady_clock::now();
    if (any_ && now - last_ < interval_) {
      ++suppressed_;
      return false;
    }
    any_ = true;
    last_ = now;
    suppressed = suppressed_;
    suppressed_ = 0;
    return true;
  }

 private:
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_{};
  bool any_ = false;
  uint64_t suppressed_ = 0;
};

}  // namespace roam
