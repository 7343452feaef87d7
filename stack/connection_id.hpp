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
// The id lives with the pcb itself (an lwIP ext arg slot), so it travels with the pcb
// through capture and import, and is forgotten when lwIP frees the pcb (the slot's
// destroy callback). Lookups by id are O(1): an index id -> pcb holds the pcbs that are
// registered in lwIP's tcp_active_pcbs, kept by lwIP itself through the "active hook"
// patch (cmake/LwipPatches.cmake), which reports every pcb joining or leaving that list.
// Loop thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

struct tcp_pcb;

namespace roam {

uint64_t connection_id_from_isns(uint32_t client_isn, uint32_t server_isn);

// The id stored in the pcb, 0 when none.
uint64_t connection_id(const tcp_pcb* pcb);
// Stores (or replaces: re-keys the index) the pcb's id. The pcb may be registered or not
// (an import sets the id before it is parked); the index follows either way.
void set_connection_id(tcp_pcb* pcb, uint64_t id);

// Computes and stores the id at the two moments both ISNs are known and nothing else has
// moved the sequence numbers yet: a listener's accept (server side) and an active open's
// connected callback (client side).
uint64_t assign_connection_id_at_accept(tcp_pcb* pcb);
uint64_t assign_connection_id_at_connected(tcp_pcb* pcb);

// The pcb with this id among those registered in tcp_active_pcbs (SYN_SENT through
// LAST_ACK), or nullptr: the same answer as a walk of tcp_active_pcbs, in O(1). Not
// found: a parked import until it is registered (unparked), an export while frozen, a
// pcb in TIME_WAIT, a freed pcb. Ids are unique between hosts; two registered pcbs of
// one process with the same id (both ends of a connection in a test lab) are both kept:
// the one that got its id or was registered last answers, the other once it leaves.
tcp_pcb* find_pcb_by_connection_id(uint64_t id);

// Every registered pcb with this id, newest first: one, except in a process that holds
// both ends of a connection (a test lab). O(that count).
std::vector<tcp_pcb*> find_pcbs_by_connection_id(uint64_t id);

// How many pcbs the index holds (tests and status; O(ids)).
size_t indexed_connection_count();

}  // namespace roam
