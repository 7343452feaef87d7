#pragma once
// One line of a pcb's sequence and window state, for the log line of a connection given
// up as dead: whether the peer went away or the two ends disagree about the sequence
// space (a move gone wrong) is visible in these numbers and nowhere else afterwards.
#include <string>

struct tcp_pcb;

namespace roam {

std::string pcb_state_text(const tcp_pcb* pcb);

}  // namespace roam
