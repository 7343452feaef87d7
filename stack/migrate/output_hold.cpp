#include "stack/migrate/output_hold.hpp"

namespace roam::migrate {

OutputHold::OutputHold(Node& node) : node_(node) {
  node_.add_output_filter(this);
}

OutputHold::~OutputHold() {
  node_.remove_output_filter(this);
}

void OutputHold::hold(const FlowKey& flow) {
  if (held_.insert(flow).second) ++counters_.flows_held;
}

FilterVerdict OutputHold::on_output(std::span<const uint8_t> packet) {
  if (held_.empty()) return FilterVerdict::pass;
  auto flow = outbound_flow(packet);
  if (!flow || held_.count(*flow) == 0) return FilterVerdict::pass;
  ++counters_.packets_held;
  return FilterVerdict::drop;
}

}  // namespace roam::migrate
