// Admission control (issue 13): how much state one source prefix (/24 for IPv4, /64 for
// IPv6) holds in this process's listeners: half-open connections (lwIP's SYN_RCVD pcbs)
// and established connections accepted by a listener. Counted exactly, kept with each pcb
// in an lwIP ext arg slot and given back when lwIP frees it, so every way a pcb ends
// (accepted and closed, aborted, timed out in SYN_RCVD, moved away) counts down. SYN-cookie
// connections have no half-open state. Imported (moved-in) connections are not counted:
// they were admitted where they began. Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "base/ip_address.hpp"
#include "stack/flow_key.hpp"
#include "stack/lwip.hpp"

namespace roam::defense {

struct SourcePrefix {
  uint8_t version = 4;
  uint64_t bits = 0;  // the /24 (IPv4) or /64 (IPv6), left-aligned
  bool operator==(const SourcePrefix&) const = default;
  std::string to_string() const;
};
SourcePrefix source_prefix(const IpAddress& address);

// Counts of the state prefixes hold now. Process-wide (lwIP is a singleton; its pcbs may
// outlive any one owner).
size_t half_open_of(const SourcePrefix& prefix);
size_t established_of(const SourcePrefix& prefix);
// Whether lwIP holds a half-open (SYN_RCVD) pcb for exactly this flow: a SYN for it is a
// retransmission lwIP must answer, not a new handshake. O(1).
bool lwip_half_open(const FlowKey& flow);
size_t half_open_total();

// Starts counting a listener's half-open connections (its pcbs from now on).
void watch_listener_pcb(tcp_pcb* listen_pcb);
void unwatch_listener_pcb(tcp_pcb* listen_pcb);

// At accept: the pcb leaves half-open (when it was) and counts as established for its
// prefix, unless the prefix already holds `cap` (0: no cap): then false, nothing counted.
bool admit_established(tcp_pcb* pcb, size_t cap);

}  // namespace roam::defense
