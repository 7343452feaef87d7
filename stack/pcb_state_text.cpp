#include "stack/pcb_state_text.hpp"

#include <fmt/format.h>

#include "lwip/priv/tcp_priv.h"

namespace roam {

namespace {

// Sequence numbers relative to lastack read far more easily than 32-bit absolutes.
std::string queue_text(const tcp_seg* seg, uint32_t base) {
  if (seg == nullptr) return "-";
  size_t count = 0;
  for (const tcp_seg* s = seg; s != nullptr; s = s->next) ++count;
  return fmt::format("{} seg from {:+d} len {}", count, static_cast<int32_t>(lwip_ntohl(seg->tcphdr->seqno) - base),
                     seg->len);
}

}  // namespace

std::string pcb_state_text(const tcp_pcb* pcb) {
  if (pcb == nullptr) return "no pcb";
  uint32_t base = pcb->lastack;
  return fmt::format(
      "state {} lastack {} snd_nxt {:+d} snd_lbb {:+d} snd_wnd {} cwnd {} ssthresh {} wl1 {} wl2 {:+d} rcv_nxt {} "
      "rcv_wnd {} unacked {} unsent {} nrtx {} rtime {} rto {} persist {}/{} dupacks {} flags {:#x}",
      static_cast<int>(pcb->state), base, static_cast<int32_t>(pcb->snd_nxt - base),
      static_cast<int32_t>(pcb->snd_lbb - base), pcb->snd_wnd, pcb->cwnd, pcb->ssthresh, pcb->snd_wl1,
      static_cast<int32_t>(pcb->snd_wl2 - base), pcb->rcv_nxt, pcb->rcv_wnd, queue_text(pcb->unacked, base),
      queue_text(pcb->unsent, base), pcb->nrtx, pcb->rtime, pcb->rto, pcb->persist_backoff, pcb->persist_probe,
      pcb->dupacks, static_cast<unsigned>(pcb->flags));
}

}  // namespace roam
