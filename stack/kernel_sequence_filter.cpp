#include "stack/kernel_sequence_filter.hpp"

#include <algorithm>
#include <tuple>

#include "lwip/priv/tcp_priv.h"
#include "stack/sequence_window.hpp"

namespace roam {
namespace {

auto four_tuple(const SequenceFilterFlow& flow) {
  return std::tie(flow.source, flow.destination, flow.source_port, flow.destination_port);
}

}  // namespace

std::vector<SequenceFilterFlow> sequence_filter_flows_now(size_t max_flows) {
  std::vector<SequenceFilterFlow> flows;
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr && flows.size() < max_flows; pcb = pcb->next) {
    if (!sequence_checked(*pcb) || !IP_IS_V4_VAL(pcb->local_ip) || !IP_IS_V4_VAL(pcb->remote_ip)) continue;
    SequenceFilterFlow flow;
    flow.source = lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(&pcb->remote_ip)));
    flow.destination = lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(&pcb->local_ip)));
    flow.source_port = pcb->remote_port;
    flow.destination_port = pcb->local_port;
    // What sequence_near accepts now, [rcv_nxt - zone, rcv_nxt + zone], reaching on
    // `slack` further for rcv_nxt's advance until the next refresh.
    flow.first = pcb->rcv_nxt - sequence_zone;
    flow.span = 2 * sequence_zone + sequence_filter_slack;
    flows.push_back(flow);
  }
  return flows;
}

void sort_by_four_tuple(std::vector<SequenceFilterFlow>& flows) {
  std::sort(flows.begin(), flows.end(), [](const auto& a, const auto& b) { return four_tuple(a) < four_tuple(b); });
}

bool sequence_filter_stale(std::span<const SequenceFilterFlow> installed, std::span<const SequenceFilterFlow> wanted) {
  if (installed.size() != wanted.size()) return true;
  for (size_t i = 0; i < wanted.size(); ++i) {
    if (four_tuple(installed[i]) != four_tuple(wanted[i])) return true;
    // Mod 2^32: a start behind the installed one (a connection replaced by another of the
    // same 4-tuple) shows as a huge distance too.
    if (wanted[i].first - installed[i].first > sequence_filter_slack) return true;
  }
  return false;
}

KernelSequenceFilter::KernelSequenceFilter(uv_loop_t* loop, InstallFn install, std::function<void()> sample)
    : install_(std::move(install)), sample_(std::move(sample)) {
  uv_timer_init(loop, timer_.get());
  timer_.mark_initialized();
  timer_.get()->data = this;
  uv_timer_start(timer_.get(), &KernelSequenceFilter::on_tick, tick_ms, tick_ms);
  uv_unref(timer_.base());  // the links keep the loop alive, not this
}

KernelSequenceFilter::~KernelSequenceFilter() {
  close();
}

void KernelSequenceFilter::close() {
  timer_.close();
}

void KernelSequenceFilter::refresh() {
  auto busiest_first = sequence_filter_flows_now(max_flows);
  auto wanted = busiest_first;
  sort_by_four_tuple(wanted);
  if (sequence_filter_stale(installed_, wanted)) {
    install_(busiest_first);  // a link that cannot take them all keeps the busiest
    installed_ = std::move(wanted);
    ++counters_.installs;
    counters_.flows = installed_.size();
  }
  sample_();
}

void KernelSequenceFilter::on_tick(uv_timer_t* timer) noexcept {
  auto* self = static_cast<KernelSequenceFilter*>(timer->data);
  if (self != nullptr) self->refresh();
}

}  // namespace roam
