// SynDefense: SYN cookies in front of every lwIP listener, and admission control (issue
// 13). lwIP counts each half-open connection against its listen backlog and has no SYN
// cookies: a few hundred spoofed SYNs a second shut a listener. Loop thread only; one per
// process (it watches TcpListener's registry).
//
// Two input filters on the Node:
//   defense stage: a SYN (no ACK, no handover option) to a listener on one of our
//     addresses. Cookie mode for the listener -> answered here with a crafted SYN-ACK
//     whose ISN is a cookie (syn_cookie.hpp), nothing kept, the SYN never reaches lwIP.
//     Otherwise it goes on to lwIP, which makes a half-open pcb. A SYN lwIP already holds
//     a half-open pcb for (a retransmission) always goes to lwIP.
//   admit stage (after the guard, which unparks moved-in connections): an ACK (no SYN,
//     no RST) to a listener that matches no pcb, while cookies this listener sent may
//     still be answered. ack - 1 verifies as a cookie for the 4-tuple and seq - 1 -> an
//     ESTABLISHED pcb is imported from a ConnectionSnapshot (the path migration uses)
//     and handed to the listener's accept callback; the segment then goes on to lwIP,
//     which delivers any payload it carries. It does not verify -> dropped, counted (no
//     RST: a forged ACK gets no answer).
// Modes per listener: off (lwIP alone), on (every SYN gets a cookie), checker (seed 004's
// probabilistic SYN checker, kept to compare with cookies: while the auto triggers below
// hold, each SYN goes on to lwIP with checker_probability and is dropped otherwise; lwIP's
// own handshake is the "ratify on the ACK"; no cookies), auto (default):
// cookies while the listener's half-open connections reach trigger_fraction of its
// backlog, and for two cookie periods after the last time they did, and for every
// listener while the flood detector (flood_detector.hpp, fed every SYN and every packet
// to a listener; a 100 ms timer closes its bins when none come) is alarmed.
// Admission: a SYN from a source prefix (/24, /64) that holds half_open_per_prefix
// half-open connections gets a cookie instead of more state (mode off: is dropped); one
// from a prefix holding established_per_prefix connections is dropped, and so is an
// accept beyond it. Each refusal is counted and logged at most every 5 s.
// Answer budget (prefix_budget.hpp): while the link is busy (InboundPacket::link_busy: it
// handed over a large batch, so the kernel's queue toward us is filling), a SYN that would
// get a cookie while its prefix has spent its SYN-ACK budget is dropped unanswered
// (counted, logged at most every 5 s): the write of the answer is most of what a flooded
// SYN costs this thread, and the reads it frees keep other prefixes' SYNs in the queue.
// Retransmission check (syn_retx_table.hpp, mode auto): while the link is busy or was
// within the last syn_retx_busy_hold_ms, a SYN that would get a cookie is answered only
// when the table holds its (4-tuple, ISN): the first copy is recorded and dropped
// unanswered (counted, the start of each flood logged once); a real client's
// retransmission, about a second later, gets the cookie (then subject to the budget). A
// spoofed flood, which sends each SYN once, gets no answers at all.
// Proven SYNs (stack/pcb_owner.hpp: the authenticate stage verified the owner proof of a
// client's control channel) skip the half-open cap, the retransmission check and the
// budget: they pass to lwIP, or get a cookie while the listener's backlog is at its
// trigger. The established cap still holds for them.
// The retransmission check in the kernel (tun/tun_syn_check.hpp): on TUN links, when the
// node wants kernel filters (--kernel-filter on, the default) and the kernel allows the
// program (root or CAP_BPF), the check runs in the device's transmit path instead, so a
// flood's first copies are dropped in the sender's context and never cost this thread a
// read. It is switched on and off with the userspace check (retransmission check active
// and some listener answering with cookies); a SYN it judged and passed is a
// retransmission here. Every bin_ms: its generations advance, the first copies it dropped
// count as SYNs for the flood detector (which no longer sees them) and, when there were at
// least kernel_busy_drops of them or the detector is alarmed, hold the check on as a busy
// batch does. Unlike the
// userspace check it cannot see owner proofs: while it is on, a proven SYN's first copy is
// dropped too (one SYN retry). Only when every interface offers one; otherwise userspace.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "base/rate_limited_log.hpp"
#include "base/uv_handle.hpp"
#include "stack/defense/flood_detector.hpp"
#include "stack/defense/prefix_budget.hpp"
#include "stack/defense/syn_cookie.hpp"
#include "stack/defense/syn_retx_table.hpp"
#include "stack/node.hpp"
#include "stack/tcp_listener.hpp"
#include "tun/tun_syn_check.hpp"

namespace roam::defense {

enum class CookieMode : uint8_t { off, on, automatic, checker };
std::string_view to_string(CookieMode mode);
std::optional<CookieMode> parse_cookie_mode(std::string_view text);  // off | on | auto | checker

// When a SYN that would get a cookie must be a retransmission to be answered: never (off),
// while the link is busy (auto), or always (on: tests, and a server that wants no
// answer to any spoofed SYN at the price of one SYN retry per connection).
enum class RetxCheck : uint8_t { off, automatic, on };
std::string_view to_string(RetxCheck check);
std::optional<RetxCheck> parse_retx_check(std::string_view text);  // off | auto | on

struct SynDefenseConfig {
  CookieMode mode = CookieMode::automatic;
  // auto: cookies once a listener's half-open connections reach this fraction of its
  // backlog (lwIP's TCP_DEFAULT_LISTEN_BACKLOG, 255).
  double trigger_fraction = 0.5;
  uint64_t period_ms = default_cookie_period_ms;  // secret rotation
  size_t half_open_per_prefix = 64;               // 0: no cap
  size_t established_per_prefix = 100000;         // 0: no cap (the scale bench holds 40000)
  bool flood_detector = true;  // auto mode: its alarm turns cookies on too (checker mode: the checker)
  // checker mode: the chance that a SYN is answered (by lwIP) while the checker is on;
  // seed 004's Table 5 used 1, 0.75, 0.5 and 0.25.
  double checker_probability = 1.0;
  uint64_t checker_seed = 0;  // 0: random (tests fix it)
  FloodDetectorConfig detector;
  // Cookie SYN-ACKs per source prefix (per_second 0: no budget).
  PrefixBudgetConfig synack_budget;
  RetxCheck syn_retx_check = RetxCheck::automatic;
  // auto: the check stays on this long after the last busy batch (a flood the thread
  // keeps up with once it stops answering makes smaller batches; answering again would
  // make it fall behind again).
  uint64_t syn_retx_busy_hold_ms = 1000;
  SynRetxTableConfig syn_retx_table;
  // The kernel's check: first copies it dropped within one bin_ms that hold the check on
  // (2,560 a second at 100 ms bins: above what a server's own clients open; a detector
  // alarm holds it too).
  uint64_t kernel_busy_drops = 256;
};

struct SynDefenseCounters {
  uint64_t syn_cookies_sent = 0;   // SYN-ACKs with a cookie
  uint64_t syn_cookies_ok = 0;     // ACKs whose cookie verified: connections made
  uint64_t syn_cookies_bad = 0;    // ACKs to a listener matching no pcb whose cookie failed: dropped
  uint64_t syn_cookie_import_failed = 0;  // verified, but no pcb could be made (memory)
  uint64_t syn_cookie_triggers = 0;  // auto mode turned cookies on for a listener
  uint64_t admission_half_open_cookied = 0;  // SYNs of a prefix at its half-open cap: cookie instead
  uint64_t admission_half_open_dropped = 0;  // the same with cookies off: dropped
  uint64_t admission_established_refused = 0;  // SYNs and accepts of a prefix at its connection cap
  uint64_t syn_checker_passed = 0;   // checker mode, checker on: SYNs chosen, handed to lwIP
  uint64_t syn_checker_dropped = 0;  // checker mode, checker on: SYNs not chosen, dropped
  uint64_t syn_checker_triggers = 0; // checker mode: the backlog trigger turned the checker on
  uint64_t synack_budget_dropped = 0;  // SYNs left unanswered: their prefix spent its SYN-ACK budget
  uint64_t syn_first_dropped = 0;   // retransmission check: a SYN's first copy, recorded, unanswered
  uint64_t syn_proven_exempt = 0;   // SYNs with a verified owner proof: outside the per-prefix limits
  uint64_t syn_retx_answered = 0;   // retransmission check: a recorded SYN seen again, answered
  uint64_t syn_check_kernel_switches = 0;  // the kernel's check (kernel_counters()): times switched on
};

class SynDefense final : public ListenerWatcher {
 public:
  SynDefense(Node& node, SynDefenseConfig config);
  ~SynDefense() override;
  SynDefense(const SynDefense&) = delete;
  SynDefense& operator=(const SynDefense&) = delete;

  const SynDefenseConfig& config() const { return config_; }
  const SynDefenseCounters& counters() const { return counters_; }
  // Whether the listener on `port` answers SYNs with cookies now.
  bool cookies_active(uint16_t port, uint64_t now_ms) const;
  // Checker mode: whether the listener on `port` answers SYNs only by chance now.
  bool checker_active(uint16_t port, uint64_t now_ms) const;
  const FloodDetector& detector() const { return detector_; }
  // Whether the retransmission check runs in the kernel now (tun/tun_syn_check.hpp), and
  // its counters summed over the links, read live from the kernel's maps.
  bool kernel_check_active() const { return kernel_active_; }
  TunSynCheckCounters kernel_counters() const;
  // Ports of the listeners this defense watches.
  std::vector<uint16_t> ports() const;

  // ListenerWatcher
  void listening(TcpListener& listener) override;
  void closing(TcpListener& listener) override;
  bool admit(TcpListener& listener, tcp_pcb* pcb) override;

 private:
  struct SynFilter final : InputFilter {
    SynDefense* self;
    explicit SynFilter(SynDefense* s) : self(s) {}
    FilterVerdict on_input(const InboundPacket& packet) override { return self->on_syn(packet); }
    void prefetch(std::span<const std::span<const uint8_t>> batch, bool busy, uint64_t now_ms) override {
      self->prefetch_syns(batch, busy, now_ms);
    }
  };
  struct AckFilter final : InputFilter {
    SynDefense* self;
    explicit AckFilter(SynDefense* s) : self(s) {}
    FilterVerdict on_input(const InboundPacket& packet) override { return self->on_ack(packet); }
  };
  struct ListenerState {
    uint64_t last_trigger_ms = 0;  // auto: the last SYN that found the backlog at the trigger
    bool triggered = false;
    uint64_t last_cookie_ms = 0;   // the last cookie sent for this listener
    bool sent_any = false;
  };

  FilterVerdict on_syn(const InboundPacket& packet);
  // While the first-SYN check is active, a batch's SYNs to our listeners start loading
  // their records (a cache and TLB miss each, 6-8 % of the loop thread under a flood).
  void prefetch_syns(std::span<const std::span<const uint8_t>> batch, bool busy, uint64_t now_ms) const;
  FilterVerdict on_ack(const InboundPacket& packet);
  bool send_cookie(const InboundPacket& packet, ListenerState& state);
  bool backlog_at_trigger(const TcpListener& listener) const;
  // The auto and checker modes' triggers (detector alarm, or the backlog trigger within
  // two periods).
  bool triggered(uint16_t port, uint64_t now_ms) const;
  bool uses_detector() const;
  // Whether a SYN that would get a cookie must be a retransmission now.
  // `link_busy` and `now_ms` as InboundPacket has them.
  bool retx_check_active(bool link_busy, uint64_t now_ms) const;
  // Checker mode: the defense stage's verdict on a SYN.
  FilterVerdict check_syn(const InboundPacket& packet, const TcpListener& listener, ListenerState& state);
  // Closes the detector's bins up to now_ms and acts on an alarm or an all-clear.
  void update_detector(uint64_t now_ms);
  // Sets up the links' kernel checks (all or none) when the node wants kernel filters.
  void setup_kernel_checks();
  // The kernel checks' tick: generations, counters, the detector's unseen SYNs, the hold.
  void poll_kernel_checks(uint64_t now_ms);
  // Switches them on or off as the userspace check would be now.
  void switch_kernel_checks(uint64_t now_ms);
  bool any_cookies_active(uint64_t now_ms) const;
  // Whether the kernel judged this packet (and so passed it as a retransmission).
  bool judged_in_kernel(const InboundPacket& packet) const;
  static void on_tick(uv_timer_t* timer) noexcept;

  Node& node_;
  SynDefenseConfig config_;
  CookieJar jar_;
  PrefixBudget synack_budget_;
  SynRetxTable retx_table_;
  uint64_t busy_until_ms_ = 0;        // retransmission check (auto): the hold after a busy batch
  uint64_t retx_last_drop_ms_ = 0;    // the last first-copy drop: a quiet gap starts a new flood's log
  bool retx_dropped_any_ = false;
  FloodDetector detector_;
  UvHandle<uv_timer_t> detector_timer_;  // every bin_ms: the detector's bins, the kernel checks
  std::vector<TunSynCheck*> kernel_checks_;  // owned by the links
  bool kernel_active_ = false;
  uint64_t kernel_dropped_seen_ = 0;  // first copies the kernel dropped, as of the last tick
  SynFilter syn_filter_{this};
  AckFilter ack_filter_{this};
  std::map<uint16_t, ListenerState> listeners_;
  std::mt19937_64 checker_random_;
  SynDefenseCounters counters_;
  RateLimitedLog trigger_log_;
  RateLimitedLog half_open_log_;
  RateLimitedLog established_log_;
  RateLimitedLog bad_log_;
  RateLimitedLog budget_log_;
};

}  // namespace roam::defense
