// HandoverResponder: the new server's half of the NAT handover (DESIGN.md section 4; seed
// 000's fake three-way handshake). An input filter that runs before lwIP and before the
// MigrationGuard: lwIP never sees a synthetic SYN (it would open a new connection on the
// listening port), and the guard never takes one for the client's arrival.
//
// For each imported connection whose old server gave it a handover token, `expect` is
// called. The first SYN carrying our option (stack/wire/handover_segment) for that
// connection id with a valid tag tells us where the client is now, as the NAT in front
// of it presents it: the parked connection is rebound to that address and port, and we
// answer with a SYN-ACK whose sequence number lines up with what the client expects next
// (so a strict stateful NAT's window tracking admits the segments that follow) and a bare
// ACK carrying our real, scaled window (a SYN's window field is never scaled, and a NAT
// that learned only it would drop large retransmissions). The connection stays parked
// until the client's own first packet arrives (MigrationGuard). The client's window update,
// an ACK with our option, is consumed here too.
//
// Where the handshake sits (DESIGN.md section 8, checked against Linux conntrack with
// be_liberal=0): SYN at the client's snd_nxt - 1, SYN-ACK at ours - 1 and acknowledging
// the client's snd_nxt. A stateful NAT then takes every later ACK (none can exceed what
// its sender's peer sent) and every retransmission (from snd_una, inside the windows the
// two updates taught it).
//
// A repeat of the accepted SYN from the same address is answered again (the SYN-ACK was
// lost). Everything else with our option is dropped and counted: a bad tag (forged), a
// valid SYN from another address after the first or after its connection settled
// (replayed), an id we expect nothing for (unknown), a malformed option.
//
// Fed the time (with each packet, and by on_time): it owns no timer and reads no clock.
// Its owner (the Importer) calls on_time at the deadline it returns, and after expect.
// Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <queue>
#include <unordered_map>
#include <vector>

#include "crypto/handover_mac.hpp"
#include "stack/lwip.hpp"
#include "stack/flow_key.hpp"
#include "stack/node.hpp"

namespace roam::migrate {

struct HandoverResponderCounters {
  uint64_t syns_accepted = 0;   // first valid SYN: connection rebound and answered
  uint64_t syns_repeated = 0;   // the accepted SYN again, from the same place: answered again
  uint64_t syns_forged = 0;     // the tag did not verify
  uint64_t syns_replayed = 0;   // valid, but from elsewhere after the first was accepted
  uint64_t syns_unknown = 0;    // no handover expected for that connection id (or it ended)
  uint64_t syns_malformed = 0;  // our option malformed, or on a segment that is not a SYN
  uint64_t syns_refused = 0;    // handover is off here
  uint64_t synacks_sent = 0;
  uint64_t window_acks_consumed = 0;  // the client's window updates (never reach lwIP)
};

class HandoverResponder final : public InputFilter {
 public:
  // Rebinds the parked connection `parked` to the client's address and port as this host
  // sees them; returns its pcb (still parked), or nullptr when it is gone or the new
  // 4-tuple is taken.
  using RebindFn = std::function<tcp_pcb*(const FlowKey& parked, const IpAddress& client, uint16_t port)>;

  // How long after the first SYN a repeat is still answered.
  static constexpr uint64_t answered_for_ms = 30'000;
  // How long a handover nobody claimed is remembered (a parked import expires sooner;
  // a client that arrived without a handover never claims it).
  static constexpr uint64_t unclaimed_for_ms = 120'000;

  HandoverResponder(Node& node, bool enabled, RebindFn rebind);
  ~HandoverResponder() override;
  HandoverResponder(const HandoverResponder&) = delete;
  HandoverResponder& operator=(const HandoverResponder&) = delete;

  // `now_ms` unknown: unclaimed_for_ms counts from the next on_time.
  static constexpr uint64_t at_next_on_time = UINT64_MAX;

  // An imported connection, parked as `parked`, may be claimed with this token.
  // `sent_up_to`: the old server's snd_nxt (the import restarts from snd_una).
  void expect(uint64_t connection_id, const crypto::HandoverToken& token, const FlowKey& parked, uint32_t sent_up_to,
              uint64_t now_ms = at_next_on_time);
  void forget(uint64_t connection_id) { expected_.erase(connection_id); }
  // Forgets answered handovers older than answered_for_ms, unclaimed ones older than
  // unclaimed_for_ms; returns the next deadline (UINT64_MAX: nothing to wait for).
  uint64_t on_time(uint64_t now_ms);
  size_t expected_count() const { return expected_.size(); }

  FilterVerdict on_input(const InboundPacket& packet) override;
  const HandoverResponderCounters& counters() const { return counters_; }

 private:
  struct Expected {
    crypto::HandoverToken token;
    FlowKey parked;
    uint32_t sent_up_to = 0;
    bool answered = false;
    IpAddress client;  // once answered: where the SYN came from
    uint16_t client_port = 0;
    uint32_t syn_seq = 0;
    std::vector<uint8_t> replies;  // the SYN-ACK then the bare ACK, back to back
    size_t synack_length = 0;
    uint64_t answered_at_ms = 0;
    uint64_t expected_at_ms = UINT64_MAX;  // until on_time stamps it
    uint64_t forget_at_ms() const {
      if (answered) return answered_at_ms + answered_for_ms;
      return expected_at_ms == UINT64_MAX ? UINT64_MAX : expected_at_ms + unclaimed_for_ms;
    }
  };
  struct Due {
    uint64_t at_ms;
    uint64_t connection_id;
    bool operator>(const Due& other) const { return at_ms > other.at_ms; }
  };
  void answer(Expected& expected, uint64_t connection_id, const IpAddress& server, uint16_t server_port,
              uint32_t syn_seq, tcp_pcb* pcb, uint64_t now_ms);
  void send_replies(const Expected& expected);

  Node& node_;
  bool enabled_;
  RebindFn rebind_;
  std::unordered_map<uint64_t, Expected> expected_;
  // Deadlines, earliest first: each entry's own is pushed whenever it changes (expected,
  // answered), so one that no longer matches its entry (answered, forgotten, expected
  // anew) is stale and dropped. Nothing is walked to expire something else.
  std::priority_queue<Due, std::vector<Due>, std::greater<>> due_;
  std::vector<uint64_t> unstamped_;  // expected without a time, stamped by on_time
  HandoverResponderCounters counters_;
};

}  // namespace roam::migrate
