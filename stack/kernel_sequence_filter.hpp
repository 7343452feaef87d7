// KernelSequenceFilter: keeps the links' kernel socket filters (tun/sequence_filter.hpp)
// in step with lwIP, so blind forgeries of the busiest connections are dropped before
// they are read (issue 16: the forged-ACM flood). Every tick it takes the first
// `max_flows` synchronized IPv4 connections of lwIP's active list (lwIP moves each
// receiving pcb to the front, so these are the busy ones) and installs, for each, the
// sequence range the Node's own window check accepts (stack/sequence_window.hpp) widened
// ahead by `slack`, the most rcv_nxt may advance before the next refresh. A filter is
// rebuilt only when the set of flows changed or a connection's rcv_nxt moved more than
// `slack` since it was installed.
//
// Why a late refresh is harmless: a real segment dropped by a stale range is
// retransmitted by its sender and passes once the range is refreshed; the Node's window
// check still judges everything the filter lets through.
// Owned by the Node; loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "base/uv_handle.hpp"
#include "tun/sequence_filter.hpp"

namespace roam {

struct KernelSequenceFilterCounters {
  uint64_t installs = 0;  // filters (re)built and handed to the links
  uint64_t flows = 0;     // flows in the last one
};

// How far ahead of an installed range's rcv_nxt the range still reaches.
inline constexpr uint32_t sequence_filter_slack = 16u << 20;

// The ranges for lwIP's first `max_flows` synchronized IPv4 connections, busiest (most
// recently receiving) first. Reads lwIP's active list.
std::vector<SequenceFilterFlow> sequence_filter_flows_now(size_t max_flows);
void sort_by_four_tuple(std::vector<SequenceFilterFlow>& flows);

// Whether `installed` must be rebuilt to cover `wanted` (both sorted by 4-tuple): a flow
// came or went, or one's range start moved by more than the slack. Pure.
bool sequence_filter_stale(std::span<const SequenceFilterFlow> installed, std::span<const SequenceFilterFlow> wanted);

class KernelSequenceFilter {
 public:
  // `install` hands a program's flows to every link that takes one; `sample` lets links
  // read their kernel drop counters.
  using InstallFn = std::function<void(std::span<const SequenceFilterFlow>)>;
  KernelSequenceFilter(uv_loop_t* loop, InstallFn install, std::function<void()> sample);
  ~KernelSequenceFilter();
  KernelSequenceFilter(const KernelSequenceFilter&) = delete;
  KernelSequenceFilter& operator=(const KernelSequenceFilter&) = delete;

  static constexpr uint64_t tick_ms = 10;
  static constexpr size_t max_flows = 64;

  // One refresh now (the timer calls it every tick_ms).
  void refresh();
  void close();
  const KernelSequenceFilterCounters& counters() const { return counters_; }

 private:
  static void on_tick(uv_timer_t* timer) noexcept;

  InstallFn install_;
  std::function<void()> sample_;
  std::vector<SequenceFilterFlow> installed_;
  UvHandle<uv_timer_t> timer_;
  KernelSequenceFilterCounters counters_;
};

}  // namespace roam
