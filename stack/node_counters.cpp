#include "stack/node_counters.hpp"

#include <string>

namespace roam {

void register_node_counters(CounterRegistry& r, const Node& node) {
  const auto& n = node.counters();
  r.add("node", "rx_packets", &n.rx_packets);
  r.add("node", "rx_malformed", &n.rx_malformed);
  r.add("node", "rx_filtered", &n.rx_filtered);
  r.add("node", "tx_packets", &n.tx_packets);
  r.add("node", "tx_filtered", &n.tx_filtered);
  // rx_dropped_window among them: blind forgeries of a known 4-tuple (the forged-ACM
  // flood), far outside the window.
  for (size_t stage = 0; stage < input_stage_count; ++stage)
    r.add("node", "rx_dropped_" + std::string(to_string(static_cast<InputStage>(stage))),
          &n.rx_filtered_by_stage[stage]);
  r.add("node", "rx_handover_unclaimed", &n.rx_handover_unclaimed);
  // Datagrams from senders the link does not accept (UDP link allowlist), every link.
  r.add_total("node", "rx_foreign", [&node] { return node.link_counter_total(&LinkCounters::rx_foreign); });
  // What the kernel dropped before the links read it: blind forgeries caught by the
  // sequence filter (stack/kernel_sequence_filter.hpp), and a full socket buffer.
  r.add_total("node", "rx_dropped_kernel", [&node] { return node.link_counter_total(&LinkCounters::rx_dropped_kernel); });
  r.add_total("node", "kernel_filter_installs", [&node] {
    const auto* filter = node.kernel_sequence_filter();
    return filter ? filter->counters().installs : uint64_t{0};
  });
}

}  // namespace roam
