// PcbOwner: which client key owns a carrier connection, kept with the pcb itself (an lwIP
// ext arg slot, like the connection id), so it travels with the pcb through capture and
// import and is forgotten when lwIP frees the pcb (issue 11: registrations bound to their
// owner). Loop thread only.
//
// Server side: the owner-proof stage (stack/control/owner_proof_verifier) checks the
// proof a SYN carries and remembers the proven owner for that flow (remember_syn_owner);
// the listener's accept moves it into the new pcb (adopt_syn_owner), next to the id.
// Client side: a pcb armed with a SynOptionSource before tcp_connect carries the source's
// option in its SYN (and its retransmissions): lwIP's TCP option hooks
// (LWIP_HOOK_TCP_OUT_TCPOPT_LENGTH / _ADD_TCPOPTS in lwipopts.h) ask this module.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "stack/flow_key.hpp"

struct tcp_pcb;

namespace roam {

// A client's static public key (crypto::PublicKey; this layer has no libsodium).
inline constexpr size_t owner_key_bytes = 32;
using OwnerKey = std::array<uint8_t, owner_key_bytes>;

std::optional<OwnerKey> pcb_owner(const tcp_pcb* pcb);
void set_pcb_owner(tcp_pcb* pcb, const OwnerKey& owner);

// The owner a SYN with this ISN proved for `flow` (as the server sees it), until the
// connection is accepted. Bounded: the oldest entries go first (a SYN whose handshake
// never completes leaves nothing for long).
void remember_syn_owner(const FlowKey& flow, uint32_t isn, const OwnerKey& owner);
// Whether a SYN of `flow` with this ISN proved its owner (the authenticate stage ran
// before): the SYN defense answers such a SYN outside its per-prefix limits. A SYN on the
// same 4-tuple with another ISN is not proven by its predecessor.
bool syn_owner_proven(const FlowKey& flow, uint32_t isn);
// At accept: moves the owner its SYN proved (if any) into the pcb. O(1).
void adopt_syn_owner(tcp_pcb* pcb);
size_t remembered_syn_owner_count();
inline constexpr size_t max_remembered_syn_owners = 8192;

// What an armed pcb adds to its SYN. The option must be a whole number of 32-bit words
// and the same length every time (lwIP sizes the segment before it writes it).
class SynOptionSource {
 public:
  virtual ~SynOptionSource() = default;
  virtual size_t option_length() const = 0;
  // Writes option_length() bytes for a SYN with this sequence number toward this port.
  virtual void write_option(uint32_t isn, uint16_t remote_port, std::span<uint8_t> out) const = 0;
};

// Arms a pcb that has not sent its SYN yet (before tcp_connect). nullptr: nothing.
void arm_syn_option(tcp_pcb* pcb, std::shared_ptr<const SynOptionSource> source);

}  // namespace roam
