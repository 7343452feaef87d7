// A classic BPF socket filter that drops, in the kernel, blind forgeries of a known TCP
// flow carried in an IP-in-UDP datagram (issue 16: the forged-ACM flood). It is the
// Node's sequence-window check (stack/sequence_window.hpp) moved in front of the socket's
// queue for the few flows it names: a datagram whose inner packet is an IPv4 TCP segment
// of a listed flow, without SYN, whose sequence number lies outside that flow's range, is
// dropped before it costs a queue slot, a copy and a share of recvmmsg. Everything else
// is accepted and judged in userspace as before: flows not listed, IPv6, fragments, SYNs,
// and segments with at least 28 bytes of options (room for a handover option, which the
// Node does not check either). A flooder who pads its forgeries that far only gets them
// to the userspace check.
//
// The program is built by a pure function; tun/udp_link.cpp attaches it (SO_ATTACH_FILTER,
// no privilege needed). The kernel counts what it drops in the socket's drop counter.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <span>
#include <vector>

namespace roam {

// One inbound flow as the inner packet carries it (host byte order): from the peer
// (`source`) to this node (`destination`), and the sequence numbers it may carry, from
// `first` for `span` more (mod 2^32).
struct SequenceFilterFlow {
  uint32_t source = 0;
  uint32_t destination = 0;
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
  uint32_t first = 0;
  uint32_t span = 0;
  bool operator==(const SequenceFilterFlow&) const = default;
};

// At most this many flows per program (each takes 11 instructions; the kernel allows 4096).
inline constexpr size_t sequence_filter_max_flows = 256;

// The program for `flows` (the first sequence_filter_max_flows of them). Offsets are from
// the UDP header, where a UDP socket's filter starts reading. Pure.
std::vector<sock_filter> build_sequence_filter(std::span<const SequenceFilterFlow> flows);

}  // namespace roam
