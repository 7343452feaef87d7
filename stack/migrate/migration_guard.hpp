// MigrationGuard: keeps a moving connection's packets from doing harm on either host.
// Owned by whoever moves connections (the Importer, the Follower); registers itself on
// the Node's input and output chains. Fed the time: it owns no timer and reads no clock;
// its owner calls on_time at the deadline it returns (and after silencing). Loop thread
// only.
//
// Old host: a frozen or exported flow is *silenced*: its inbound packets are dropped and
// counted. Without this, lwIP would answer them with RST (it no longer knows the flow)
// and kill the client's connection. Silenced flows are forgotten after a grace period,
// kept in deadline order (a move silences thousands at once: none is walked to expire
// another).
//
// New host: an imported flow is *parked*: its pcb is not yet known to lwIP (no timers, so
// no retransmission backoff while the client has not switched) and anything it sends is
// dropped. The first packet of the flow that arrives on the new path unparks it: the pcb
// is registered before lwIP sees the packet, and once lwIP has processed it everything
// unacknowledged goes out at once (DESIGN.md section 8).
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <unordered_map>
#include <vector>

#include "stack/lwip.hpp"
#include "stack/flow_key.hpp"
#include "stack/node.hpp"

namespace roam::migrate {

struct MigrationGuardCounters {
  uint64_t silenced_input_drops = 0;  // old host: packets of moved flows dropped
  uint64_t parked_output_drops = 0;   // new host: packets of parked flows held back
  uint64_t unparked = 0;              // new host: flows the client reached on the new path
};

class MigrationGuard final : public InputFilter, public OutputFilter {
 public:
  // How long an exported flow stays silenced: late and retransmitted segments still in
  // the network die quietly in this time.
  static constexpr uint64_t default_silence_ms = 60'000;

  explicit MigrationGuard(Node& node, uint64_t silence_ms = default_silence_ms);
  ~MigrationGuard() override;
  MigrationGuard(const MigrationGuard&) = delete;
  MigrationGuard& operator=(const MigrationGuard&) = delete;

  // `now_ms` unknown: the grace period starts at the next on_time (a clockless caller,
  // such as the Exporter; the owner's next on_time comes within its housekeeping tick).
  static constexpr uint64_t at_next_on_time = UINT64_MAX;

  void silence(const FlowKey& key, uint64_t now_ms = at_next_on_time);
  void unsilence(const FlowKey& key);
  bool is_silenced(const FlowKey& key) const { return silenced_.count(key) != 0; }
  size_t silenced_count() const { return silenced_.size(); }
  // Forgets silenced flows whose grace period ended; returns the next deadline
  // (UINT64_MAX: nothing to wait for).
  uint64_t on_time(uint64_t now_ms);

  // `pcb` is an imported, unregistered pcb with its callbacks set. `on_unparked` runs
  // (deferred) after transmission restarted.
  void park(const FlowKey& key, tcp_pcb* pcb, std::function<void()> on_unparked = {});
  // Moves a parked flow to another remote endpoint (the NAT handover learned where the
  // client really is): the pcb's remote address and port change with the key. Returns
  // the pcb, or nullptr when `from` is not parked or `to` is taken.
  tcp_pcb* repark(const FlowKey& from, const FlowKey& to);
  // Forgets a parked flow without registering it: call before its pcb is freed.
  void forget_parked(const FlowKey& key);
  // Client side: watch(key) until the first packet of the flow arrives; then
  // is_watched(key) turns false (the peer is alive on this path) and `on_heard` runs
  // (deferred).
  void watch(const FlowKey& key, std::function<void()> on_heard = {}) { watched_[key] = std::move(on_heard); }
  void unwatch(const FlowKey& key) { watched_.erase(key); }
  bool is_watched(const FlowKey& key) const { return watched_.count(key) != 0; }

  // Registers every parked pcb with lwIP as it is (shutdown: so closing them works).
  void unpark_all();
  bool is_parked(const FlowKey& key) const { return parked_.count(key) != 0; }
  // Whether `pcb` is parked here (by pointer: a walk of the parked flows; rare paths only).
  bool holds(const tcp_pcb* pcb) const {
    for (const auto& [key, parked] : parked_)
      if (parked.pcb == pcb) return true;
    return false;
  }
  size_t parked_count() const { return parked_.size(); }

  FilterVerdict on_input(const InboundPacket& packet) override;
  FilterVerdict on_output(std::span<const uint8_t> packet) override;

  const MigrationGuardCounters& counters() const { return counters_; }

 private:
  struct Parked {
    tcp_pcb* pcb;
    std::function<void()> on_unparked;
  };
  struct Expiry {
    uint64_t at_ms;
    FlowKey key;
    bool operator>(const Expiry& other) const { return at_ms > other.at_ms; }
  };

  Node& node_;
  uint64_t silence_ms_;
  // -> expiry (loop ms; UINT64_MAX until on_time stamps it). An entry of expiries_ is
  // stale (skipped) when the flow was unsilenced, or silenced again with a later expiry.
  std::unordered_map<FlowKey, uint64_t, FlowKeyHash> silenced_;
  std::priority_queue<Expiry, std::vector<Expiry>, std::greater<>> expiries_;
  std::vector<FlowKey> unstamped_;  // silenced without a time, stamped by on_time
  std::unordered_map<FlowKey, Parked, FlowKeyHash> parked_;
  std::unordered_map<FlowKey, std::function<void()>, FlowKeyHash> watched_;
  MigrationGuardCounters counters_;
};

}  // namespace roam::migrate
