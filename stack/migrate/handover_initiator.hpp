// HandoverInitiator: the client's half of the NAT handover (DESIGN.md section 4; seed
// 000's fake three-way handshake). After the client applied an Address Change Message,
// each redirected connection sends a synthetic SYN from its own address and port toward
// the new server, so that a stateful NAT in front of the client records the new 4-tuple
// before the connection's own segments arrive there. The SYN's sequence number sits just
// before the bytes the connection will send next, its window scale and MSS are the
// connection's, and our option (stack/wire/handover_segment) carries the connection id,
// our rcv_nxt (so the server's SYN-ACK can line up with it) and a tag made with the
// handover token from the ACM. Until the SYN-ACK arrives, the connection's own output is
// held (it would only be dropped by the NAT, and counted against us); the SYN is repeated
// with backoff, then the handover gives up and the connection is left to its direct path.
//
// Input filter, before lwIP and before the MigrationGuard: a SYN-ACK with our option is
// taken only if it answers a pending SYN (right ack, valid tag); the bare ACK that follows
// it (the server's real window, for the NAT) is consumed too, and we send ours. lwIP never
// sees any of them.
// Any other SYN-ACK with our option, or any SYN-ACK on a flow in handover, is dropped and
// counted.
//
// Fed the time (by start, with each packet, and by on_time): it owns no timer and reads
// no clock. Its owner (the Follower) calls on_time at the deadline it returns, and asks
// again (next_deadline) after start and after each `done`, whose handover may have let
// a queued one send its SYN. Due SYNs are kept in deadline order: a move of ten thousand
// connections walks none of them to find the few that are due. Loop thread only.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <unordered_map>
#include <vector>

#include "crypto/handover_mac.hpp"
#include "stack/lwip.hpp"
#include "stack/flow_key.hpp"
#include "stack/node.hpp"

namespace roam::migrate {

struct HandoverInitiatorCounters {
  uint64_t handovers_started = 0;
  uint64_t syns_sent = 0;
  uint64_t syn_retries = 0;
  uint64_t synacks_accepted = 0;
  uint64_t synacks_stray = 0;   // with our option but for no pending handover, or without it on one
  uint64_t synacks_forged = 0;  // for a pending handover, but a bad tag or acknowledgement
  uint64_t window_acks_sent = 0;
  uint64_t window_acks_consumed = 0;  // the server's, with our option: never reach lwIP
  uint64_t output_held = 0;           // the connection's own packets held while its SYN was out
  uint64_t handovers_failed = 0;
};

class HandoverInitiator final : public InputFilter, public OutputFilter {
 public:
  // Runs (deferred, never inside a filter) when a handover ends: answered, or given up.
  using DoneFn = std::function<void(const FlowKey& flow, bool answered)>;

  static constexpr uint64_t first_retry_ms = 50;
  static constexpr uint64_t max_retry_ms = 1000;
  static constexpr int max_syns = 8;  // about 3.6 s in all
  // Handovers whose SYN is out at once; the others wait their turn (held, like the
  // pending ones). A thousand connections moved together would otherwise send a
  // thousand SYNs, and get a thousand SYN-ACKs and window updates, in one burst that
  // overflows the queues on the way (a TUN device holds 500 packets by default).
  static constexpr size_t max_outstanding = 64;

  HandoverInitiator(Node& node, DoneFn done);
  ~HandoverInitiator() override;
  HandoverInitiator(const HandoverInitiator&) = delete;
  HandoverInitiator& operator=(const HandoverInitiator&) = delete;

  // `pcb` already points at the new server (rewrite_remote without a restart). Sends the
  // first SYN now, or queues it behind max_outstanding others. False (nothing started)
  // when the connection has no id.
  bool start(tcp_pcb* pcb, uint64_t connection_id, const crypto::HandoverToken& token, uint64_t now_ms);
  // Repeats the SYNs that are due, gives up on handovers out of SYNs (or whose
  // connection ended), sends queued SYNs in their place. Returns the next deadline.
  uint64_t on_time(uint64_t now_ms);
  // When on_time wants to run next (UINT64_MAX: nothing pending with a SYN out).
  uint64_t next_deadline() const { return due_.empty() ? UINT64_MAX : due_.top().at_ms; }
  bool is_pending(const FlowKey& flow) const { return pending_.count(flow) != 0; }
  size_t outstanding() const { return outstanding_; }
  size_t pending_count() const { return pending_.size(); }
  void close();

  FilterVerdict on_input(const InboundPacket& packet) override;
  FilterVerdict on_output(std::span<const uint8_t> packet) override;
  const HandoverInitiatorCounters& counters() const { return counters_; }

 private:
  struct Pending {
    uint64_t connection_id = 0;
    crypto::HandoverToken token{};
    uint32_t syn_seq = 0;
    std::vector<uint8_t> syn;  // sent again unchanged
    int syns = 0;              // 0: waiting its turn
    uint64_t interval_ms = first_retry_ms;
    uint64_t next_at_ms = 0;
    uint64_t first_sent_ms = 0;
  };
  struct Due {
    uint64_t at_ms;
    FlowKey flow;
    bool operator>(const Due& other) const { return at_ms > other.at_ms; }
  };
  // Sends queued SYNs while fewer than max_outstanding are out.
  void launch_queued(uint64_t now_ms);
  // Builds and sends the first SYN; false when it cannot be built or routed.
  bool launch(const FlowKey& flow, Pending& pending, uint64_t now_ms);
  // Pops deadlines of handovers that ended (or moved on) off the top of due_.
  void drop_stale_deadlines();
  // Our real, scaled window for the NAT, right after the SYN-ACK (its window was not scaled).
  void send_window_update(const FlowKey& flow, const Pending& pending, uint32_t server_next);
  void finish(const FlowKey& flow, bool answered);

  Node& node_;
  DoneFn done_;
  std::unordered_map<FlowKey, Pending, FlowKeyHash> pending_;
  std::deque<FlowKey> queue_;  // waiting their turn, oldest first
  // SYNs out, by when each is due again, earliest first; an element whose handover ended
  // is stale and dropped when it reaches the top.
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due_;
  size_t outstanding_ = 0;  // pending with a SYN out
  // Smoothed time from a SYN to its SYN-ACK (answers to a first SYN only, as Karn's rule
  // wants), 0 until measured: a busy new server answers a large move slowly, and
  // retrying every 50 ms then only adds duplicate SYNs and answers to its load.
  uint64_t answer_ms_ = 0;
  HandoverInitiatorCounters counters_;
  bool closed_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace roam::migrate
