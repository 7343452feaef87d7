// roam-client: takes a dead server's connections to the next server from the client-held
// checkpoints (PROTOCOL.md 14.5). Every 250 ms it looks at each connection it holds a
// checkpoint of: when the server has been silent on it for `after_ms` (the server died:
// kill -9, no export), it picks the next server (--resume-to's when given, else the roam
// pool's member per the client's schedule: RoamFollow::takeover_target), opens a
// channel to it, sends RESUME with the latest
// checkpoint and the connection's sequence view (rcv_nxt, snd_una, snd_nxt as lwIP holds
// them now), and on RESUMED re-points the connection there (Follower::resumed_at). A
// refusal is logged and counted; the connection stays on its old path (the dead-peer
// bound then ends it). Owned by roam-client; loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <optional>
#include <set>
#include <unordered_map>

#include "apps/checkpoint_holder.hpp"
#include "apps/roam_follow.hpp"
#include "base/counters.hpp"
#include "base/ip_address.hpp"
#include "base/uv_handle.hpp"
#include "stack/migrate/follower.hpp"
#include "stack/node.hpp"

namespace roam {

struct CheckpointResumerCounters {
  uint64_t sent = 0;      // RESUMEs sent
  uint64_t resumed = 0;   // connections the next server rebuilt
  uint64_t refused = 0;   // RESUMED with a refusal
  uint64_t no_channel = 0;  // the next server's channel could not be used
  // Which next server a RESUME goes to (one per attempt; a retry after resend_ms counts again),
  // or none found:
  uint64_t to_fixed = 0;       // --resume-to's
  uint64_t to_active = 0;      // the pool member active now (schedule)
  uint64_t to_next_epoch = 0;  // the dead member is active now: the next other member of the schedule
  uint64_t no_target = 0;      // no --resume-to and no schedule naming another member (once per connection)
};

class CheckpointResumer {
 public:
  // `fixed` (--resume-to) wins; without it `schedule` (may be null: no target) picks.
  CheckpointResumer(Node& node, Follower& follower, CheckpointHolder& holder, std::optional<IpAddress> fixed,
                    RoamFollow* schedule, uint64_t after_ms, CounterRegistry& registry);
  ~CheckpointResumer() { close(); }
  CheckpointResumer(const CheckpointResumer&) = delete;
  CheckpointResumer& operator=(const CheckpointResumer&) = delete;

  void close();
  void on_answer(const IpAddress& server, const control::ResumeAnswer& answer);

 private:
  void poll();
  void send_resume(uint64_t id, const IpAddress& next);
  // The next server for a connection of `dead`, counted by path; nullopt when none.
  std::optional<IpAddress> pick_target(uint64_t id, const IpAddress& dead);

  Node& node_;
  Follower& follower_;
  CheckpointHolder& holder_;
  std::optional<IpAddress> fixed_;
  RoamFollow* schedule_;
  uint64_t after_ms_;
  struct Pending {
    uint64_t sent_ms = 0;  // loop time its RESUME went out (retried after resend_ms unanswered)
    IpAddress next;        // the server asked
  };
  std::unordered_map<uint64_t, Pending> pending_;  // by connection id
  std::set<uint64_t> settled_;    // resumed or refused: not asked again
  std::set<uint64_t> no_target_;  // counted once as no_target
  std::unordered_map<uint64_t, uint64_t> window_closed_at_;  // loop time our receive window was last seen closed
  CheckpointResumerCounters counters_;
  UvHandle<uv_timer_t> timer_;
  static constexpr uint64_t resend_ms = 5000;
};

}  // namespace roam
