// Clocks. Engine state machines never read a clock themselves: their owner passes the
// loop's monotonic time (uv_now, milliseconds) in and arms timers for the deadline they
// return. Wall-clock time is only for what crosses hosts (ACM issue times, known-hosts
// ages), and comes from unix_ms().
#pragma once

#include <chrono>
#include <cstdint>

namespace roam {

// Unix time in milliseconds: what ACMs are stamped with (issued_at) and checked against,
// and what known-hosts entries record (in seconds). The wall clock, not the loop's.
inline uint64_t unix_ms() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
}

}  // namespace roam
