// Connection ids: the name both ends give a TCP connection, agreed when it is set up
// (DESIGN.md section 5), so a control message can name it after a NAT rewrote the
// client's port or after it moved to another host. The id is built from the two initial
// sequence numbers, which both ends saw in the handshake and which NAT leaves alone:
//   id = client ISN << 32 | server ISN      (0 is never used: it means "none")
// It is unguessable to an off-path host (64 random bits) but not secret, and it does not
// need to be: only an authenticated control message can act on it. A middlebox that
// rewrites sequence numbers (some firewalls randomize ISNs) breaks the agreement; such a
// connection simply cannot be named and so is not moved.
//
// The id lives in the pcb itself (an lwIP ext arg slot), so it travels with the pcb
// through capture and import. Loop thread only.
#pragma once

#include <cstdint>

struct tcp_pcb;

namespace roam {

uint64_t connection_id_from_isns(uint32_t client_isn, uint32_t server_isn);

// The id stored in the pcb, 0 when none.
uint64_t connection_id(const tcp_pcb* pcb);
void set_connection_id(tcp_pcb* pcb, uint64_t id);

// Computes and stores the id at the two moments both ISNs are known and nothing else has
// moved the sequence numbers yet: a listener's accept (server side) and an active open's
// connected callback (client side).
uint64_t assign_connection_id_at_accept(tcp_pcb* pcb);
uint64_t assign_connection_id_at_connected(tcp_pcb* pcb);

// The active pcb with this id, or nullptr.
tcp_pcb* find_pcb_by_connection_id(uint64_t id);

}  // namespace roam
