// roam-client --resume-to: takes a dead server's connections to the next server from the
// client-held checkpoints (PROTOCOL.md 14.5). Every 250 ms it looks at each connection it
// holds a checkpoint of: when the server has been silent on it for `after_ms` (the server
// died: kill -9, no export), it opens a channel to `next`, sends RESUME with the latest
// checkpoint and the connection's sequence view (rcv_nxt, snd_una, snd_nxt as lwIP holds
// them now), and on RESUMED re-points the connection there (Follower::resumed_at). A
// refusal is logged and counted; the connection stays on its old path (the dead-peer
// bound then ends it). Owned by roam-client; loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <set>
#include <unordered_map>

#include "apps/checkpoint_holder.hpp"
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
};

class CheckpointResumer {
 public:
  CheckpointResumer(Node& node, Follower& follower, CheckpointHolder& holder, IpAddress next, uint64_t after_ms,
                    CounterRegistry& registry);
  ~CheckpointResumer() { close(); }
  CheckpointResumer(const CheckpointResumer&) = delete;
  CheckpointResumer& operator=(const CheckpointResumer&) = delete;

  void close();
  void on_answer(const IpAddress& server, const control::ResumeAnswer& answer);

 private:
  void poll();
  void send_resume(uint64_t id);

  Node& node_;
  Follower& follower_;
  CheckpointHolder& holder_;
  IpAddress next_;
  uint64_t after_ms_;
  // Connection id -> loop time its RESUME went out (retried after resend_ms unanswered).
  std::unordered_map<uint64_t, uint64_t> pending_;
  std::set<uint64_t> settled_;  // resumed or refused: not asked again
  CheckpointResumerCounters counters_;
  UvHandle<uv_timer_t> timer_;
  static constexpr uint64_t resend_ms = 5000;
};

}  // namespace roam
