// roam-client's store of client-held checkpoints (PROTOCOL.md 14.3): the latest sealed
// checkpoint per connection id, as its server pushed them (CHECKPOINT). The client cannot
// open them; it reads only the header to keep the highest generation, and presents the
// latest with a RESUME to the next server when its server falls silent
// (apps/checkpoint_resumer.hpp).
// Only the server that holds the connection now (the address the client's end points at)
// is heard: a server the connection was resumed or moved away from may still hold a copy
// (partitioned, or stopped, when the client left it) and push checkpoints of it, with
// higher generations than the new server's (generations follow the sealer's clock,
// PROTOCOL.md 14.2). Kept, such a checkpoint would make a later takeover rebuild the
// stale copy's state; it is refused and counted (`checkpoints_not_holder`), and when the
// connection is open here (at another server) `on_stale_copy` hears of it: that server
// still holds a copy (CheckpointResumer ends it).
// Counted in `checkpoint` metrics. Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/counters.hpp"
#include "base/ip_address.hpp"
#include "base/rate_limited_log.hpp"
#include "stack/control/messages.hpp"

namespace roam {

struct CheckpointHolderCounters {
  uint64_t received = 0;    // CHECKPOINT messages from trusted servers
  uint64_t kept = 0;        // ...that replaced an older generation (or were the first)
  uint64_t ignored = 0;     // ...not newer than the one held
  uint64_t malformed = 0;   // ...whose header did not read
  uint64_t not_holder = 0;  // ...from a server that does not hold the connection now (or none open here)
  uint64_t evicted = 0;     // dropped to stay within max_held
};

class CheckpointHolder {
 public:
  static constexpr size_t max_held = 4096;
  // The address of the server this client's end of a connection points at now, or nullopt
  // when the client has no open end of it.
  using HolderOf = std::function<std::optional<IpAddress>(uint64_t connection_id)>;

  // A push from `server` for connection `id`, which is open here but at another server.
  using StaleCopy = std::function<void(const IpAddress& server, uint64_t connection_id)>;

  CheckpointHolder(CounterRegistry& registry, HolderOf holder_of);
  void set_on_stale_copy(StaleCopy on_stale_copy) { on_stale_copy_ = std::move(on_stale_copy); }
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
  HolderOf holder_of_;
  StaleCopy on_stale_copy_;
  std::unordered_map<uint64_t, Held> held_;
  CheckpointHolderCounters counters_;
  RateLimitedLog not_holder_log_;
};

}  // namespace roam
