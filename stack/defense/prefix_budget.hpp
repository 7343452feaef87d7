// PrefixBudget: a token bucket per source prefix (/24, /64) for the answers a flood makes
// us send (issue 13). Under a spoofed SYN flood at full rate the loop thread's largest
// cost per SYN is writing its cookie SYN-ACK (one TUN write, and the kernel forwards it
// on our thread: tools/bench/README.md, "sensor", where the time goes); a prefix that
// sends more SYNs than `per_second` (burst `burst`) gets no more answers until its bucket
// refills, so those SYNs cost a read and a table look-up. Legitimate clients of other
// prefixes keep their answers. A flood spread over more prefixes than the table has slots
// is not slowed (each slot then changes hands, and a fresh slot starts full): this is a
// cheap first cut, not the defense; SYN cookies still answer every SYN within budget.
//
// The table is direct-mapped (`slots`, a power of two), indexed by a hash keyed with a
// random seed so a flood cannot aim at a given client's slot; a prefix that finds its
// slot held by another takes it over, full. Bounded memory, no allocation per packet.
// Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "stack/defense/admission.hpp"

namespace roam::defense {

struct PrefixBudgetConfig {
  uint32_t per_second = 100;  // answers per prefix per second once the burst is spent; 0: no budget
  uint32_t burst = 200;       // answers a prefix may take at once
  size_t slots = 4096;        // table size, rounded up to a power of two
  uint64_t seed = 0;          // 0: random (tests fix it)
};

class PrefixBudget {
 public:
  explicit PrefixBudget(PrefixBudgetConfig config);

  // Takes one answer from the prefix's bucket at `now_ms`; false when it is empty (or
  // true always with per_second 0).
  bool take(const SourcePrefix& prefix, uint64_t now_ms);
  bool enabled() const { return config_.per_second != 0; }
  const PrefixBudgetConfig& config() const { return config_; }

 private:
  struct Slot {
    SourcePrefix prefix;
    bool used = false;
    uint64_t refilled_ms = 0;
    uint32_t milli_tokens = 0;  // tokens x 1000: the refill is per_second per 1000 ms
  };
  size_t index_of(const SourcePrefix& prefix) const;

  PrefixBudgetConfig config_;
  uint64_t key_ = 0;
  std::vector<Slot> slots_;
};

}  // namespace roam::defense
