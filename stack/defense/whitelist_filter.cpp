#include "stack/defense/whitelist_filter.hpp"

#include "stack/flow_key.hpp"
#include "stack/tcp_listener.hpp"

namespace roam::defense {

WhitelistFilter::WhitelistFilter(Node& node, const SourceWhitelist& whitelist) : node_(node), whitelist_(whitelist) {
  node_.add_input_filter(InputStage::defense, this);
}

WhitelistFilter::~WhitelistFilter() {
  node_.remove_input_filter(this);
}

FilterVerdict WhitelistFilter::on_input(const InboundPacket& packet) {
  if (!packet.tcp || !whitelist_.active(packet.now_ms)) return FilterVerdict::pass;
  const FlowKey& flow = packet.tcp->flow;
  if (TcpListener::find(flow.local_port) == nullptr) return FilterVerdict::pass;
  if (whitelist_.contains(flow.remote)) {
    ++counters_.passed;
    return FilterVerdict::pass;
  }
  // A SYN from an unlisted source opens nothing here, whatever lwIP holds: dropped without
  // a lookup (the flood's packets cost one set lookup). Other segments may belong to a
  // connection that existed before whitelist mode.
  const uint8_t flags = packet.tcp->segment.flags;
  const bool syn = (flags & (wire::TcpSegmentView::SYN | wire::TcpSegmentView::ACK)) == wire::TcpSegmentView::SYN;
  if (!syn && lwip_has_flow(flow)) return FilterVerdict::pass;
  ++counters_.drops;
  return FilterVerdict::drop;
}

}  // namespace roam::defense
