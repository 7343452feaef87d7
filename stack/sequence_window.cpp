#include "stack/sequence_window.hpp"

#include "lwip/priv/tcp_priv.h"
#include "stack/flow_key.hpp"
#include "stack/node.hpp"

namespace roam {

SequenceVerdict check_sequence(const InboundTcp& tcp) {
  const auto& segment = tcp.segment;
  if (tcp.handover_option || segment.has(wire::TcpSegmentView::SYN)) return SequenceVerdict::unchecked;
  // The whole active list, as lwIP's own demultiplexing walks it for every segment: a
  // cap on the depth would let 64 busier connections push the attacked one out of reach
  // (forged segments never reach lwIP, so its pcb is never moved to the front).
  tcp_pcb* pcb = find_active_pcb(tcp.flow);
  if (pcb == nullptr || !sequence_checked(*pcb)) return SequenceVerdict::unchecked;
  return sequence_near(segment.seq, pcb->rcv_nxt) ? SequenceVerdict::near : SequenceVerdict::far;
}

bool sequence_checked(const tcp_pcb& pcb) {
  switch (pcb.state) {
    case ESTABLISHED:
    case FIN_WAIT_1:
    case FIN_WAIT_2:
    case CLOSE_WAIT:
      return true;
    default:
      return false;
  }
}

}  // namespace roam
