#include "stack/sequence_window.hpp"

#include "lwip/priv/tcp_priv.h"
#include "stack/lwip_address.hpp"
#include "stack/node.hpp"

namespace roam {

SequenceVerdict check_sequence(const InboundTcp& tcp) {
  const auto& segment = tcp.segment;
  if (tcp.handover_option || segment.has(wire::TcpSegmentView::SYN)) return SequenceVerdict::unchecked;
  int depth = 0;
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr && depth < sequence_check_depth; pcb = pcb->next, ++depth) {
    if (pcb->local_port != segment.dst_port || pcb->remote_port != segment.src_port) continue;
    if (!(from_lwip(pcb->remote_ip) == tcp.flow.remote) || !(from_lwip(pcb->local_ip) == tcp.flow.local)) continue;
    // rcv_nxt is what the peer sends next only once the handshake is done, and until
    // lwIP has taken the peer's FIN (then rcv_nxt no longer moves, and lwIP answers).
    switch (pcb->state) {
      case ESTABLISHED:
      case FIN_WAIT_1:
      case FIN_WAIT_2:
      case CLOSE_WAIT:
        return sequence_near(segment.seq, pcb->rcv_nxt) ? SequenceVerdict::near : SequenceVerdict::far;
      default:
        return SequenceVerdict::unchecked;
    }
  }
  return SequenceVerdict::unchecked;
}

}  // namespace roam
