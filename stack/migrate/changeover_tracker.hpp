// ChangeoverTracker: the client's bookkeeping after an ACM moved a batch of connections,
// until each one was heard from on the new path. A state machine fed the time: it owns no
// timer and touches no pcb; its owner (the Follower) tells it what happened, calls
// on_time at the deadline it returns, and performs the pokes it asks for. Loop thread only.
//
// Why pokes: the new server stays silent until the client's first packet reaches it, so
// if that one ACK is lost (and the client has nothing unacknowledged to retransmit) both
// ends would wait forever. Each waiting connection is poked (its transmission restarted)
// with backoff: 20, 40, ... 500 ms, 10 times (about 3.5 s); then its own timers rule.
// A thousand connections moved at once must not flood the new path: hence the backoff.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <unordered_map>

#include "base/histogram.hpp"
#include "stack/flow_key.hpp"

namespace roam::migrate {

struct ChangeoverReport {
  std::string target;  // the new server's endpoint
  size_t connections = 0;
  size_t handovers = 0;  // synthetic handshakes started
  size_t answered = 0;   // ... and answered
  size_t failed = 0;     // ... and given up on (then the direct path is tried)
  size_t heard = 0;      // heard from on the new path
  size_t unheard = 0;    // ended or never answered
  double elapsed_ms = 0;  // from the ACM to the last connection settled
};

struct ChangeoverCounters {
  uint64_t pokes = 0;       // transmissions restarted toward a new server not yet heard from
  uint64_t unanswered = 0;  // moved connections the new server never answered
  // Each moved connection's outcome: heard from on the new path, or not (it ended, or the
  // new server never answered).
  uint64_t heard = 0;
  uint64_t unheard = 0;
};

class ChangeoverTracker {
 public:
  static constexpr uint64_t first_poke_ns = 20'000'000;
  static constexpr uint64_t max_poke_ns = 500'000'000;
  static constexpr int poke_attempts = 10;

  // What the owner found when asked to poke a flow: it restarted its transmission, the
  // flow was heard meanwhile, its connection is gone, or (asked with `last`) it gave up.
  enum class PokeResult { poked, heard, gone, given_up };
  using PokeFn = std::function<PokeResult(const FlowKey& flow, bool last)>;
  // Every connection of a batch answered, was heard, ended or was given up on.
  using SettledFn = std::function<void(const ChangeoverReport&)>;
  // A batch's handovers all ended (logged by the owner as "handover to ...").
  using HandoversFn = std::function<void(const ChangeoverReport&)>;

  ChangeoverTracker(SettledFn on_settled, HandoversFn on_handovers = {})
      : on_settled_(std::move(on_settled)), on_handovers_(std::move(on_handovers)) {}

  uint64_t open_batch(std::string target, size_t connections, uint64_t now_ns);
  void handover_started(uint64_t batch, const FlowKey& flow);
  // The handover of `flow` ended; when it was part of a batch, returns true and the flow
  // should now be awaited (or reported gone).
  bool handover_finished(const FlowKey& flow, bool answered, uint64_t now_ns);
  // Awaits the first packet of `flow` on the new path; the first poke is due a tick later.
  void await(const FlowKey& flow, uint64_t batch, uint64_t now_ns);
  void heard(const FlowKey& flow, uint64_t now_ns);
  // The connection ended before it was heard (or before its handover ended).
  void gone(const FlowKey& flow, uint64_t now_ns);
  // A connection of `batch` that is no longer followed ended unheard.
  void ended(uint64_t batch, uint64_t now_ns) { count(batch, false, now_ns); }
  // Runs due pokes; returns the next deadline (UINT64_MAX: nothing to wait for).
  uint64_t on_time(uint64_t now_ns, const PokeFn& poke);
  // The batch `flow` belongs to while its handover runs, 0 if none.
  uint64_t batch_of_handover(const FlowKey& flow) const;

  size_t awaiting() const { return awaiting_.size(); }
  size_t open_batches() const { return batches_.size(); }
  const ChangeoverCounters& counters() const { return counters_; }
  // Per connection heard from on the new path: seconds from its batch's ACM until then
  // (roamstack_changeover_seconds on the client's metrics endpoint).
  const Histogram& changeover_seconds() const { return changeover_seconds_; }

 private:
  struct Awaiting {
    uint64_t batch;
    int pokes_left;
    uint64_t next_poke_ns;
    uint64_t interval_ns;
  };
  struct Batch {
    ChangeoverReport report;
    uint64_t started_ns = 0;
  };
  void count(uint64_t batch, bool heard_on_new_path, uint64_t now_ns);
  void settle_if_done(uint64_t batch, uint64_t now_ns);

  SettledFn on_settled_;
  HandoversFn on_handovers_;
  std::map<uint64_t, Batch> batches_;
  std::unordered_map<FlowKey, uint64_t, FlowKeyHash> handovers_;  // flow -> batch
  std::unordered_map<FlowKey, Awaiting, FlowKeyHash> awaiting_;
  uint64_t next_batch_ = 1;
  uint64_t next_deadline_ns_ = UINT64_MAX;
  ChangeoverCounters counters_;
  Histogram changeover_seconds_{changeover_seconds_buckets()};
};

}  // namespace roam::migrate
