// roam-client's store of client-held checkpoints (PROTOCOL.md 14.3): the latest sealed
// checkpoint per connection id, as its server pushed them (CHECKPOINT). The client cannot
// open them; it reads only the header to keep the highest generation, and would present
// the latest with a RESUME to the next server if its server died (not wired yet:
// PROTOCOL.md 14.7). Counted in `checkpoint` metrics. Loop thread only.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "base/counters.hpp"
#include "base/ip_address.hpp"
#include "stack/control/messages.hpp"

namespace roam {

struct CheckpointHolderCounters {
  uint64_t received = 0;   // CHECKPOINT messages from trusted servers
  uint64_t kept = 0;       // ...that replaced an older generation (or were the first)
  uint64_t ignored = 0;    // ...not newer than the one held
  uint64_t malformed = 0;  // ...whose header did not read
  uint64_t evicted = 0;    // dropped to stay within max_held
};

class CheckpointHolder {
 public:
  static constexpr size_t max_held = 4096;

  explicit CheckpointHolder(CounterRegistry& registry);
  void on_checkpoint(const IpAddress& server, const control::CheckpointPush& push);
  // The latest sealed checkpoint of this connection, or nullptr.
  const std::vector<uint8_t>* latest(uint64_t connection_id) const;
  // The connection ids held.
  std::vector<uint64_t> ids() const;
  // The connection ended normally: its checkpoint is of no use.
  void forget(uint64_t connection_id) { held_.erase(connection_id); }
  size_t size() const { return held_.size(); }
  const CheckpointHolderCounters& counters() const { return counters_; }

 private:
  struct Held {
    uint64_t generation = 0;
    std::vector<uint8_t> sealed;
  };
  std::unordered_map<uint64_t, Held> held_;
  CheckpointHolderCounters counters_;
};

}  // namespace roam
