// The cheapest check for a segment of a connection lwIP holds (issue 16): its sequence
// number must lie within a window of what lwIP expects next. An off-path attacker who
// forges segments of a known 4-tuple (the forged-ACM flood, tools/bench/acm_flood.cpp)
// cannot know the sequence number; a random one lands within the zone below with a
// chance of about 2 x zone / 2^32 (0.8 %), so the Node drops the rest before copying them
// into a pbuf, before the authenticate stage's crypto and before lwIP.
//
// The zone is generous on both sides: behind rcv_nxt by up to `sequence_zone` (the peer
// retransmits bytes whose ACK was lost, and lwIP must acknowledge them again; it never
// has more unacknowledged than our largest window, TCP_WND) and ahead by as much (lwIP
// trims or queues what is ahead within its window, and answers what lies just beyond it,
// rate-limited: its own "sequence check first" patch). So nothing a real peer sends is
// dropped here that lwIP would have used, and lwIP still sees every segment near the window.
// SYNs (RFC 5961's challenge ACK) and handover segments (their own tag) are not checked.
#pragma once

#include <algorithm>
#include <cstdint>

#include "stack/lwip.hpp"

namespace roam {

struct InboundTcp;

// At least 16 MiB, and more if lwIP's window is larger.
inline constexpr uint32_t sequence_zone = std::max<uint32_t>(TCP_WND, 16u << 20) + 0xFFFFu;

// Whether `seq` lies within sequence_zone of `expected`, either side (mod 2^32). Pure.
constexpr bool sequence_near(uint32_t seq, uint32_t expected) {
  const uint32_t ahead = seq - expected;
  const uint32_t behind = expected - seq;
  return ahead <= sequence_zone || behind <= sequence_zone;
}

enum class SequenceVerdict : uint8_t {
  unchecked,  // not a segment this check applies to, or no synchronized pcb of its flow
  near,       // lwIP's to judge
  far,        // drop: no real peer sends this
};
SequenceVerdict check_sequence(const InboundTcp& tcp);

// Whether `pcb`'s rcv_nxt is what its peer sends next, so the check applies: only once
// the handshake is done, and until lwIP has taken the peer's FIN (then rcv_nxt no longer
// moves, and lwIP answers). Also the connections the kernel filter lists.
bool sequence_checked(const tcp_pcb& pcb);

}  // namespace roam
