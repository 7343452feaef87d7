// roam-client: takes a dead server's connections to the next server from the client-held
// checkpoints (PROTOCOL.md 14.5). Every 250 ms it looks at each connection it holds a
// checkpoint of: when the server has been silent on it for `after_ms` (the server died:
// kill -9, no export; a server whose FIN arrived is never taken for dead:
// apps/resume_silence.hpp), it picks the next server (--resume-to's when given, else the roam
// pool's member per the client's schedule: RoamFollow::takeover_target), opens a
// channel to it, sends RESUME with the latest
// checkpoint and the connection's sequence view (rcv_nxt, snd_una, snd_nxt as lwIP holds
// them now), and on RESUMED re-points the connection there (Follower::resumed_at, with
// the NAT handover when the RESUMED carries a token). A member it resumed a connection
// away from is no takeover target for a while, and a member that refused with reason 33
// (it holds the connection live) or did not answer within resend_ms is not asked again
// for that connection: the schedule's next candidate is (ResumeAvoidance). Any other
// refusal is logged and counted and ends the resume; the connection stays on its old
// path (the dead-peer bound then ends it).
// The server left behind may not be dead (partitioned, or stopped, when the client took it
// for dead): it still holds its copy of the connection, and when it comes back it pushes
// checkpoints of it (CheckpointHolder refuses them) and retransmits on the old flow (the
// client's follower silences that flow). Its copy would live on: its failed roam moves of
// it (the live one is elsewhere) restart its dead-peer clock each time. So the first push
// of such a copy is answered with a RST on the old flow, at the sequence numbers the
// old server last acknowledged, which ends the copy there (PROTOCOL.md 14.5, "The copy
// left behind"); at most one per connection per second, counted `stale_copies_reset`.
// Owned by roam-client; loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "apps/checkpoint_holder.hpp"
#include "apps/resume_avoidance.hpp"
#include "apps/roam_follow.hpp"
#include "base/counters.hpp"
#include "base/ip_address.hpp"
#include "base/uv_handle.hpp"
#include "stack/flow_key.hpp"
#include "stack/migrate/follower.hpp"
#include "stack/node.hpp"

namespace roam {

// This client's open end of connection `id` (ESTABLISHED or CLOSE_WAIT: the states a
// resume applies to), or nullptr; and the server it points at now (CheckpointHolder's
// holder of the connection).
tcp_pcb* client_pcb(uint64_t id);
std::optional<IpAddress> client_pcb_server(uint64_t id);

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
  uint64_t unanswered = 0;     // a RESUME without RESUMED within resend_ms
  uint64_t retried_elsewhere = 0;  // a RESUME to another member after a refusal 33 or no answer
  uint64_t avoided_left = 0;   // a pick that passed over a member the client resumed away from
  uint64_t stale_copies_reset = 0;    // RSTs sent to end a copy a server left behind still holds
  uint64_t stale_copies_unknown = 0;  // a push from a server this client did not resume away from
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
  // `server` pushed a checkpoint of connection `id`, which is open here at another server
  // (CheckpointHolder::StaleCopy): end the copy it holds, if the client left it by a resume.
  void on_stale_copy(const IpAddress& server, uint64_t id);

 private:
  void poll();
  void send_resume(uint64_t id, const IpAddress& next);
  // The next server for a connection of `dead`, counted by path; nullopt when none.
  std::optional<IpAddress> pick_target(uint64_t id, const IpAddress& dead, uint64_t now_ms);

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
  ResumeAvoidance avoidance_;
  // Loop time a connection was re-pointed at a new server, or last seen in its NAT handover
  // there: its silence counts from then (until it ends).
  std::unordered_map<uint64_t, uint64_t> resumed_at_;
  // The flows each connection was resumed away from, with the old server's view of our
  // sequence space as we last saw it (its rcv_nxt: our snd_una, or snd_nxt if it took
  // more), for the RST that ends its copy.
  struct LeftBehind {
    FlowKey flow;
    uint32_t snd_una = 0;
    uint32_t snd_nxt = 0;
    uint32_t rcv_nxt = 0;
    uint64_t reset_ms = 0;  // loop time of the last RST (0: none yet)
  };
  std::unordered_map<uint64_t, std::vector<LeftBehind>> left_;  // by connection id, oldest first
  CheckpointResumerCounters counters_;
  UvHandle<uv_timer_t> timer_;
  static constexpr uint64_t resend_ms = 5000;
  static constexpr uint64_t stale_reset_interval_ms = 1000;
};

}  // namespace roam
