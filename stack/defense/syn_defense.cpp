#include "stack/defense/syn_defense.hpp"

#include <algorithm>
#include <array>

#include "base/log.hpp"
#include "lwip/priv/tcp_priv.h"
#include "stack/defense/admission.hpp"
#include "stack/defense/cookie_connection.hpp"
#include "stack/defense/syn_peek.hpp"
#include "stack/lwip_address.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/pcb_owner.hpp"
#include "stack/wire/syn_options.hpp"
#include "stack/wire/tcp_header.hpp"

namespace roam::defense {

namespace {

using wire::TcpSegmentView;

// lwIP's ip4_input / ip6_input accept a packet for any of our addresses on any netif;
// a SYN to another address must not get a SYN-ACK from us.
bool is_local_address(const IpAddress& address) {
  ip_addr_t a = to_lwip(address);
  netif* n = nullptr;
  NETIF_FOREACH(n) {
    if (IP_IS_V4(&a)) {
      if (ip4_addr_cmp(netif_ip4_addr(n), ip_2_ip4(&a))) return true;
    } else if (netif_get_ip6_addr_match(n, ip_2_ip6(&a)) >= 0) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string_view to_string(CookieMode mode) {
  switch (mode) {
    case CookieMode::off:
      return "off";
    case CookieMode::on:
      return "on";
    case CookieMode::automatic:
      return "auto";
    case CookieMode::checker:
      return "checker";
  }
  return "unknown";
}

std::optional<CookieMode> parse_cookie_mode(std::string_view text) {
  if (text == "off") return CookieMode::off;
  if (text == "on") return CookieMode::on;
  if (text == "auto") return CookieMode::automatic;
  if (text == "checker") return CookieMode::checker;
  return std::nullopt;
}

std::string_view to_string(RetxCheck check) {
  switch (check) {
    case RetxCheck::off:
      return "off";
    case RetxCheck::automatic:
      return "auto";
    case RetxCheck::on:
      return "on";
  }
  return "unknown";
}

std::optional<RetxCheck> parse_retx_check(std::string_view text) {
  if (text == "off") return RetxCheck::off;
  if (text == "auto") return RetxCheck::automatic;
  if (text == "on") return RetxCheck::on;
  return std::nullopt;
}

SynDefense::SynDefense(Node& node, SynDefenseConfig config)
    : node_(node),
      config_(config),
      jar_(config.period_ms),
      synack_budget_(config.synack_budget),
      retx_table_(config.syn_retx_table),
      detector_(config.detector) {
  uint64_t seed = config_.checker_seed;
  // Not a secret, but a flood that could predict the chosen SYNs would send only those.
  if (seed == 0) randombytes_buf(&seed, sizeof seed);
  checker_random_.seed(seed);
  setup_kernel_checks();
  if (uses_detector() || !kernel_checks_.empty()) {
    // Bins must close when no SYN comes (the all-clear after a flood); unref'd so the
    // timer alone keeps no loop running.
    if (uv_timer_init(node_.loop(), detector_timer_.get()) == 0) {
      detector_timer_.mark_initialized();
      detector_timer_.get()->data = this;
      uv_timer_start(detector_timer_.get(), &SynDefense::on_tick, config_.detector.bin_ms, config_.detector.bin_ms);
      uv_unref(detector_timer_.base());
    }
    if (uses_detector()) detector_.update(uv_now(node_.loop()));
  }
  node_.add_input_filter(InputStage::defense, &syn_filter_);
  node_.add_input_filter(InputStage::admit, &ack_filter_);
  TcpListener::set_watcher(this);
}

SynDefense::~SynDefense() {
  TcpListener::set_watcher(nullptr);
  for (TcpListener* listener : TcpListener::all())
    if (listener->listen_pcb() != nullptr) unwatch_listener_pcb(listener->listen_pcb());
  node_.remove_input_filter(&syn_filter_);
  node_.remove_input_filter(&ack_filter_);
}

std::vector<uint16_t> SynDefense::ports() const {
  std::vector<uint16_t> out;
  for (const auto& [port, state] : listeners_) out.push_back(port);
  return out;
}

void SynDefense::listening(TcpListener& listener) {
  listeners_[listener.port()] = ListenerState{};
  if (listener.listen_pcb() != nullptr) watch_listener_pcb(listener.listen_pcb());
}

void SynDefense::closing(TcpListener& listener) {
  if (listener.listen_pcb() != nullptr) unwatch_listener_pcb(listener.listen_pcb());
  listeners_.erase(listener.port());
}

bool SynDefense::admit(TcpListener& listener, tcp_pcb* pcb) {
  if (admit_established(pcb, config_.established_per_prefix)) return true;
  ++counters_.admission_established_refused;
  uint64_t suppressed = 0;
  if (established_log_.allow(suppressed))
    logger("defense")->warn("port {}: refused a connection from {}: its prefix holds {} connections ({} more not logged)",
                            listener.port(), from_lwip(pcb->remote_ip).to_string(), config_.established_per_prefix,
                            suppressed);
  return false;
}

void SynDefense::on_tick(uv_timer_t* timer) noexcept {
  auto* self = static_cast<SynDefense*>(timer->data);
  if (self == nullptr) return;
  const uint64_t now = uv_now(self->node_.loop());
  self->poll_kernel_checks(now);  // first: its drops go into the bin update_detector closes
  self->update_detector(now);
}

void SynDefense::setup_kernel_checks() {
  if (!node_.kernel_filters_wanted() || node_.interface_count() == 0) return;
  if (config_.mode == CookieMode::off || config_.mode == CookieMode::checker ||
      config_.syn_retx_check == RetxCheck::off)
    return;  // no first-SYN check to move into the kernel
  std::vector<TunSynCheck*> checks;
  for (size_t i = 0; i < node_.interface_count(); ++i) {
    std::string why;
    TunSynCheck* check = node_.link(i).kernel_syn_check(why);
    if (check == nullptr) {
      // A link with none to offer (UDP, a pcap tap) is not news; a kernel's refusal is.
      logger("defense")->log(why.empty() ? spdlog::level::debug : spdlog::level::info,
                             "first SYN copies checked in userspace ({}: {})", node_.link(i).describe(),
                             why.empty() ? "no kernel check on this link" : why);
      return;  // all or none: a packet's interface does not say which link it came by
    }
    checks.push_back(check);
  }
  kernel_checks_ = std::move(checks);
  logger("defense")->info("first SYN copies checked in the kernel while a flood lasts (eBPF on {} TUN link{})",
                          kernel_checks_.size(), kernel_checks_.size() == 1 ? "" : "s");
}

bool SynDefense::any_cookies_active(uint64_t now_ms) const {
  for (const auto& [port, state] : listeners_)
    if (cookies_active(port, now_ms)) return true;
  return false;
}

void SynDefense::switch_kernel_checks(uint64_t now_ms) {
  const bool want = retx_check_active(false, now_ms) && any_cookies_active(now_ms);
  if (want == kernel_active_) return;
  kernel_active_ = want;
  for (TunSynCheck* check : kernel_checks_) check->set_active(want);
  if (want) ++counters_.syn_check_kernel_switches;
  logger("defense")->info(want ? "first SYN copies now dropped in the kernel"
                               : "first SYN copies checked in the kernel no more (the flood ended)");
}

TunSynCheckCounters SynDefense::kernel_counters() const {
  TunSynCheckCounters sum;
  for (const TunSynCheck* check : kernel_checks_) {
    const auto c = check->counters();
    sum.judged += c.judged;
    sum.first_dropped += c.first_dropped;
    sum.retx_passed += c.retx_passed;
  }
  return sum;
}

void SynDefense::poll_kernel_checks(uint64_t now_ms) {
  if (kernel_checks_.empty()) return;
  for (TunSynCheck* check : kernel_checks_) check->advance(now_ms);
  const uint64_t dropped = kernel_counters().first_dropped;
  const uint64_t new_drops = dropped - kernel_dropped_seen_;
  kernel_dropped_seen_ = dropped;
  if (uses_detector() && new_drops > 0) {
    update_detector(now_ms);  // the drops go into the bin that holds now
    detector_.on_syns_unseen(new_drops);
  }
  // Our batches shrink once the kernel drops the flood, which would end the hold: a
  // detector alarm or a flood's worth of its drops keep the check on as busy batches did.
  // Not any drop: a server's own clients' first copies alone must not hold it forever.
  if (new_drops >= config_.kernel_busy_drops || (uses_detector() && detector_.alarmed()))
    busy_until_ms_ = now_ms + config_.syn_retx_busy_hold_ms;
  switch_kernel_checks(now_ms);
}

bool SynDefense::judged_in_kernel(const InboundPacket& packet) const {
  return kernel_active_ && TunSynCheck::judges(packet.bytes);
}

bool SynDefense::uses_detector() const {
  return config_.flood_detector && (config_.mode == CookieMode::automatic || config_.mode == CookieMode::checker);
}

void SynDefense::update_detector(uint64_t now_ms) {
  if (!uses_detector()) return;
  const auto transition = detector_.update(now_ms);
  const auto& s = detector_.state();
  // Transitions are rare (hysteresis: clear_ms quiet before an all-clear): no rate limit.
  if (transition == FloodDetector::Transition::alarm && config_.mode == CookieMode::checker) {
    logger("defense")->warn("flood detector: {:.0f} SYN/s against a baseline of {:.0f} (CUSUM {:.1f}): SYN checker "
                            "on for every listener (answers {:.0f} % of SYNs)",
                            s.syn.rate, s.syn.baseline, s.syn.cusum, 100 * config_.checker_probability);
  } else if (transition == FloodDetector::Transition::alarm) {
    logger("defense")->warn("flood detector: {:.0f} SYN/s against a baseline of {:.0f} (CUSUM {:.1f}): SYN cookies "
                            "on for every listener",
                            s.syn.rate, s.syn.baseline, s.syn.cusum);
  } else if (transition == FloodDetector::Transition::all_clear) {
    logger("defense")->warn("flood detector: all clear after {} ms, {:.0f} SYN/s (baseline {:.0f}, peak {}): SYN "
                            "cookies back to the backlog trigger",
                            now_ms - s.alarmed_since_ms, s.syn.rate, s.syn.baseline, s.peak_rate);
  }
}

bool SynDefense::triggered(uint16_t port, uint64_t now_ms) const {
  if (uses_detector() && detector_.alarmed() && listeners_.contains(port)) return true;
  auto it = listeners_.find(port);
  if (it == listeners_.end() || !it->second.triggered) return false;
  return now_ms < it->second.last_trigger_ms + 2 * config_.period_ms;
}

bool SynDefense::cookies_active(uint16_t port, uint64_t now_ms) const {
  if (config_.mode == CookieMode::on) return true;
  if (config_.mode != CookieMode::automatic) return false;
  return triggered(port, now_ms);
}

bool SynDefense::checker_active(uint16_t port, uint64_t now_ms) const {
  return config_.mode == CookieMode::checker && triggered(port, now_ms);
}

bool SynDefense::retx_check_active(bool link_busy, uint64_t now_ms) const {
  switch (config_.syn_retx_check) {
    case RetxCheck::off:
      return false;
    case RetxCheck::on:
      return true;
    case RetxCheck::automatic:
      return link_busy || now_ms < busy_until_ms_;
  }
  return false;
}

bool SynDefense::backlog_at_trigger(const TcpListener& listener) const {
  const auto* lpcb = reinterpret_cast<const tcp_pcb_listen*>(listener.listen_pcb());
  const double trigger = std::max(1.0, config_.trigger_fraction * lpcb->backlog);
  return lpcb->accepts_pending >= trigger;
}

void SynDefense::prefetch_syns(std::span<const std::span<const uint8_t>> batch, bool busy, uint64_t now_ms) const {
  if (config_.mode == CookieMode::checker || !retx_check_active(busy, now_ms) || kernel_active_) return;
  for (const auto& packet : batch) {
    auto syn = peek_syn(packet);
    if (syn && listeners_.count(syn->flow.local_port) != 0) retx_table_.prefetch(syn->flow, syn->isn);
  }
}

FilterVerdict SynDefense::on_syn(const InboundPacket& packet) {
  if (packet.link_busy) {
    busy_until_ms_ = packet.now_ms + config_.syn_retx_busy_hold_ms;
    if (!kernel_active_ && !kernel_checks_.empty()) switch_kernel_checks(packet.now_ms);  // at once, not next tick
  }
  if (!packet.tcp || packet.tcp->handover_option) return FilterVerdict::pass;
  const TcpSegmentView& segment = packet.tcp->segment;
  auto state = listeners_.find(segment.dst_port);
  if (state == listeners_.end()) return FilterVerdict::pass;
  const bool syn =
      (segment.flags & (TcpSegmentView::SYN | TcpSegmentView::ACK | TcpSegmentView::RST)) == TcpSegmentView::SYN;
  if (uses_detector()) {
    update_detector(packet.now_ms);
    detector_.on_packet(segment.dst_port);
    if (syn) detector_.on_syn(segment.dst_port);
  }
  if (!syn) return FilterVerdict::pass;
  TcpListener* listener = TcpListener::find(segment.dst_port);
  if (listener == nullptr || listener->listen_pcb() == nullptr) return FilterVerdict::pass;
  const FlowKey& flow = packet.tcp->flow;
  if (!is_local_address(flow.local)) return FilterVerdict::pass;
  if (lwip_half_open(flow)) return FilterVerdict::pass;  // a retransmission: lwIP answers it

  const SourcePrefix prefix = source_prefix(flow.remote);
  uint64_t suppressed = 0;
  if (config_.established_per_prefix != 0 && established_of(prefix) >= config_.established_per_prefix) {
    ++counters_.admission_established_refused;
    if (established_log_.allow(suppressed))
      logger("defense")->warn("port {}: SYN from {} dropped: {} holds {} connections, the cap ({} more not logged)",
                              segment.dst_port, flow.remote.to_string(), prefix.to_string(),
                              config_.established_per_prefix, suppressed);
    return FilterVerdict::drop;
  }

  if (config_.mode == CookieMode::checker) return check_syn(packet, *listener, state->second);
  const uint64_t now = packet.now_ms;
  bool cookies = cookies_active(segment.dst_port, now);
  if (config_.mode == CookieMode::automatic && backlog_at_trigger(*listener)) {
    if (!cookies) {
      ++counters_.syn_cookie_triggers;
      const auto* lpcb = reinterpret_cast<const tcp_pcb_listen*>(listener->listen_pcb());
      if (trigger_log_.allow(suppressed))
        logger("defense")->warn("port {}: {} half-open connections of a backlog of {}: SYN cookies on, until {} s "
                                "after this stops ({} more not logged)",
                                segment.dst_port, lpcb->accepts_pending, lpcb->backlog,
                                2 * config_.period_ms / 1000, suppressed);
    }
    state->second.triggered = true;
    state->second.last_trigger_ms = now;
    cookies = true;
  }
  // A SYN whose owner proof the authenticate stage verified comes from a client holding an
  // authenticated control channel, not from a spoofed source: the per-prefix half-open cap,
  // the first-SYN drop and the SYN-ACK budget are for those. Hundreds of one client's
  // carriers behind one NAT address otherwise starve each other (a connect gives up after
  // three unanswered SYNs). It still gets a cookie instead of a pcb when the listener's
  // backlog is filling. A replay of it is the same SYN: at most one connection.
  if (syn_owner_proven(flow, segment.seq)) {
    ++counters_.syn_proven_exempt;
    if (!cookies) return FilterVerdict::pass;
    send_cookie(packet, state->second);
    return FilterVerdict::drop;
  }
  if (!cookies && config_.half_open_per_prefix != 0 && half_open_of(prefix) >= config_.half_open_per_prefix) {
    if (config_.mode == CookieMode::off) {
      ++counters_.admission_half_open_dropped;
      if (half_open_log_.allow(suppressed))
        logger("defense")->warn("port {}: SYN from {} dropped: {} holds {} half-open connections, the cap ({} more "
                                "not logged)",
                                segment.dst_port, flow.remote.to_string(), prefix.to_string(),
                                config_.half_open_per_prefix, suppressed);
      return FilterVerdict::drop;
    }
    ++counters_.admission_half_open_cookied;
    if (half_open_log_.allow(suppressed))
      logger("defense")->info("port {}: {} holds {} half-open connections, the cap: its SYNs get cookies ({} more "
                              "not logged)",
                              segment.dst_port, prefix.to_string(), config_.half_open_per_prefix, suppressed);
    cookies = true;
  }
  if (!cookies) return FilterVerdict::pass;
  // First-SYN drop: the answer's write is what a flooded SYN costs most, and a spoofed
  // SYN never comes again. Before the budget, so first copies spend none of it.
  bool retransmission = false;
  if (judged_in_kernel(packet)) {
    retransmission = true;  // the kernel passed it: its first copy is on record there
  } else if (retx_check_active(packet.link_busy, packet.now_ms)) {
    if (!retx_table_.seen_then_record(cookie_flow_of(segment), segment.seq, now)) {
      ++counters_.syn_first_dropped;
      // Once per flood: a first drop after 10 s without one starts a new flood.
      if (!retx_dropped_any_ || now >= retx_last_drop_ms_ + 10'000)
        logger("defense")->warn("port {}: SYN flood on a busy link: SYNs answered only on their retransmission "
                                "(first copies recorded and dropped; a legitimate connect costs one SYN retry)",
                                segment.dst_port);
      retx_dropped_any_ = true;
      retx_last_drop_ms_ = now;
      return FilterVerdict::drop;
    }
    retransmission = true;
  }
  if (packet.link_busy && !synack_budget_.take(prefix, now)) {
    ++counters_.synack_budget_dropped;
    if (budget_log_.allow(suppressed))
      logger("defense")->warn("port {}: SYN from {} left unanswered: {} spent its budget of {} SYN-ACKs/s ({} more "
                              "not logged)",
                              segment.dst_port, flow.remote.to_string(), prefix.to_string(),
                              config_.synack_budget.per_second, suppressed);
    return FilterVerdict::drop;
  }
  if (send_cookie(packet, state->second) && retransmission) ++counters_.syn_retx_answered;
  return FilterVerdict::drop;  // answered: lwIP never sees it
}

FilterVerdict SynDefense::check_syn(const InboundPacket& packet, const TcpListener& listener, ListenerState& state) {
  // Seed 004's SYN checker (section 4.3.4), stateful as theirs: a chosen SYN gets lwIP's
  // SYN-ACK and a half-open pcb; the client's ACK completes it there. Per-prefix
  // half-open cap as with cookies off: beyond it, dropped.
  const uint16_t port = packet.tcp->segment.dst_port;
  const uint64_t now = packet.now_ms;
  uint64_t suppressed = 0;
  if (backlog_at_trigger(listener)) {
    if (!triggered(port, now)) {
      ++counters_.syn_checker_triggers;
      const auto* lpcb = reinterpret_cast<const tcp_pcb_listen*>(listener.listen_pcb());
      if (trigger_log_.allow(suppressed))
        logger("defense")->warn("port {}: {} half-open connections of a backlog of {}: SYN checker on (answers {:.0f} "
                                "% of SYNs), until {} s after this stops ({} more not logged)",
                                port, lpcb->accepts_pending, lpcb->backlog, 100 * config_.checker_probability,
                                2 * config_.period_ms / 1000, suppressed);
    }
    state.triggered = true;
    state.last_trigger_ms = now;
  }
  const SourcePrefix prefix = source_prefix(packet.tcp->flow.remote);
  if (config_.half_open_per_prefix != 0 && half_open_of(prefix) >= config_.half_open_per_prefix) {
    ++counters_.admission_half_open_dropped;
    if (half_open_log_.allow(suppressed))
      logger("defense")->warn("port {}: SYN from {} dropped: {} holds {} half-open connections, the cap ({} more "
                              "not logged)",
                              port, packet.tcp->flow.remote.to_string(), prefix.to_string(),
                              config_.half_open_per_prefix, suppressed);
    return FilterVerdict::drop;
  }
  if (!triggered(port, now)) return FilterVerdict::pass;
  // 53 random bits against the probability: exact for 1 (always) and 0 (never).
  const double draw = static_cast<double>(checker_random_() >> 11) * 0x1.0p-53;
  if (draw < config_.checker_probability) {
    ++counters_.syn_checker_passed;
    return FilterVerdict::pass;
  }
  ++counters_.syn_checker_dropped;
  return FilterVerdict::drop;
}

bool SynDefense::send_cookie(const InboundPacket& packet, ListenerState& state) {
  const TcpSegmentView& segment = packet.tcp->segment;
  const wire::SynOptions options = wire::parse_syn_options(segment.options);
  CookieParams requested;
  // No MSS option: 536 (RFC 9293 3.7.1); lwIP takes 0 as its own maximum, we as 536.
  requested.mss = options.mss.value_or(536);
  if (options.window_scale) requested.window_scale = std::min<uint8_t>(*options.window_scale, 14);
  requested.sack_permitted = false;  // lwIP does not do SACK: the SYN-ACK never grants it
  const CookieFlow flow = cookie_flow_of(segment);
  const uint32_t cookie = jar_.make(packet.now_ms, flow, segment.seq, requested);

  const auto* listen_pcb = TcpListener::find(segment.dst_port)->listen_pcb();
  ip_addr_t remote = to_lwip(packet.tcp->flow.remote);
  const u16_t our_mss = tcp_eff_send_mss_netif(TCP_MSS, packet.interface, &remote);
  std::array<uint8_t, wire::synack_options_max> option_bytes{};
  const size_t option_length = wire::write_synack_options(
      option_bytes, our_mss,
      options.window_scale ? std::optional<uint8_t>(cookie_our_window_scale()) : std::nullopt);
  const auto option_span = std::span<const uint8_t>(option_bytes).first(option_length);

  std::array<uint8_t, wire::ipv6_header_size + wire::tcp_header_min + wire::synack_options_max> out{};
  size_t length = 0;
  auto fill = [&](auto& fields) {
    fields.src_port = segment.dst_port;
    fields.dst_port = segment.src_port;
    fields.seq = cookie;
    fields.ack = segment.seq + 1;
    fields.flags = TcpSegmentView::SYN | TcpSegmentView::ACK;
    fields.window = cookie_synack_window();
    fields.ttl = listen_pcb->ttl;
    fields.options = option_span;
  };
  if (segment.version == 4) {
    wire::Ipv4TcpFields fields;
    std::copy_n(segment.dst_address.begin(), 4, fields.src.begin());
    std::copy_n(segment.src_address.begin(), 4, fields.dst.begin());
    fill(fields);
    length = wire::build_ipv4_tcp(out, fields, {});
  } else {
    wire::Ipv6TcpFields fields;
    fields.src = segment.dst_address;
    fields.dst = segment.src_address;
    fill(fields);
    length = wire::build_ipv6_tcp(out, fields, {});
  }
  if (length == 0 || !node_.send_packet(std::span<const uint8_t>(out).first(length))) return false;
  ++counters_.syn_cookies_sent;
  state.last_cookie_ms = packet.now_ms;
  state.sent_any = true;
  return true;
}

FilterVerdict SynDefense::on_ack(const InboundPacket& packet) {
  if (!packet.tcp) return FilterVerdict::pass;
  const TcpSegmentView& segment = packet.tcp->segment;
  if ((segment.flags & (TcpSegmentView::SYN | TcpSegmentView::ACK | TcpSegmentView::RST)) != TcpSegmentView::ACK)
    return FilterVerdict::pass;
  auto state = listeners_.find(segment.dst_port);
  if (state == listeners_.end()) return FilterVerdict::pass;
  // Only while a cookie this listener sent may still come back (it verifies for at most
  // two periods): otherwise lwIP answers as it always did.
  const bool expecting = config_.mode == CookieMode::on ||
                         (state->second.sent_any && packet.now_ms < state->second.last_cookie_ms + 2 * config_.period_ms);
  if (!expecting) return FilterVerdict::pass;
  TcpListener* listener = TcpListener::find(segment.dst_port);
  if (listener == nullptr || listener->listen_pcb() == nullptr) return FilterVerdict::pass;
  const FlowKey& flow = packet.tcp->flow;
  if (!is_local_address(flow.local)) return FilterVerdict::pass;
  if (lwip_has_flow(flow)) return FilterVerdict::pass;

  auto params = jar_.check(packet.now_ms, cookie_flow_of(segment), segment.seq - 1, segment.ack - 1);
  uint64_t suppressed = 0;
  if (!params) {
    ++counters_.syn_cookies_bad;
    if (bad_log_.allow(suppressed))
      logger("defense")->debug("port {}: ACK from {} matches no connection and no cookie: dropped ({} more not logged)",
                               segment.dst_port, flow.remote.to_string(), suppressed);
    return FilterVerdict::drop;
  }
  if (config_.established_per_prefix != 0 &&
      established_of(source_prefix(flow.remote)) >= config_.established_per_prefix) {
    ++counters_.admission_established_refused;
    return FilterVerdict::drop;
  }
  const auto* lpcb = listener->listen_pcb();
  ListenerTraits traits;
  traits.keepalive = (lpcb->so_options & SOF_KEEPALIVE) != 0;
  traits.tos = lpcb->tos;
  traits.ttl = lpcb->ttl;
  auto pcb = migrate::import_pcb(cookie_snapshot(flow, segment, *params, traits), flow.local);
  if (!pcb) {
    ++counters_.syn_cookie_import_failed;
    return FilterVerdict::drop;  // the client retransmits its ACK or data; memory may be back
  }
  migrate::register_imported_pcb(*pcb);
  if (!listener->accept_established(*pcb)) return FilterVerdict::drop;  // refused: the pcb is gone
  ++counters_.syn_cookies_ok;
  return FilterVerdict::pass;  // lwIP now takes the ACK, and any payload, on the new pcb
}

}  // namespace roam::defense
