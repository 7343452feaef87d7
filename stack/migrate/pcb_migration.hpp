// Moving one TCP connection between lwIP stacks (seed 000's Connector, seed 003's
// search_pcb / modify_pcb), as operations on lwIP tcp_pcbs. Loop thread only; never call
// these from inside a callback of the pcb concerned (use Node::defer).
//
// The walk of a move, old host A to new host B:
//   A: freeze_pcb      take the pcb off lwIP's active list: no timer, no input, no output
//                      touches it (the MigrationGuard drops its packets, without RST)
//   A: capture_snapshot  read its state and queues into a wire::ConnectionSnapshot
//   B: import_pcb      build an ESTABLISHED pcb with B's address and the same state; the
//                      unacknowledged and unsent bytes are queued again with their
//                      original sequence numbers, as lwIP itself does after an RTO
//   B: register_imported_pcb   into lwIP's active list (callbacks set first)
//   A: discard_frozen_pcb on success (no RST, no FIN), or thaw_pcb to resume unchanged.
// DESIGN.md section 8 lists which fields move and which restart fresh, and why.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "stack/lwip.hpp"
#include "stack/flow_key.hpp"
#include "stack/wire/connection_snapshot.hpp"
#include "base/ip_address.hpp"
#include "base/result.hpp"

namespace roam::migrate {


// Whether the pcb is in a state that can move (ESTABLISHED or CLOSE_WAIT, no FIN queued
// by us, not mid-handshake). Returns the reason when not.
Result<Ok, std::string> check_movable(const tcp_pcb* pcb);

// Takes a movable pcb off lwIP's active list. Idempotent per pcb only under the caller's
// bookkeeping: freeze once, then thaw or discard once.
void freeze_pcb(tcp_pcb* pcb);
// Puts a frozen pcb back, unchanged, and lets it send what it has. Its peer's silence is
// counted from now (the frozen time is not the peer's; stack/dead_peer.hpp).
void thaw_pcb(tcp_pcb* pcb);
// Frees a frozen pcb and its queues without sending anything. Its callbacks are cleared
// first; the owner must forget the pointer.
void discard_frozen_pcb(tcp_pcb* pcb);

// Reads a (frozen) pcb into a snapshot. `received` are bytes lwIP delivered that the app
// has not consumed; `app_state` is the app's own encoding.
Result<wire::ConnectionSnapshot, std::string> capture_snapshot(const tcp_pcb* pcb, std::span<const uint8_t> received,
                                                               std::span<const uint8_t> app_state);

// Pre-copy (stack/migrate/precopy.hpp), on a live pcb: copies its send stream from
// `from` (a sequence number in [snd_una, snd_lbb]) to snd_lbb, the bytes queued now, into
// `out`. False, copying nothing, when `from` is outside that range or the queue is not
// one stream (a capture would fail the same way).
bool read_send_queue(const tcp_pcb* pcb, uint32_t from, std::vector<uint8_t>& out);
// Appends the received data lwIP holds because the app refused it (it comes after what the
// app holds itself), as capture_snapshot does.
void append_refused_data(const tcp_pcb* pcb, std::vector<uint8_t>& out);

// Builds a pcb from a validated snapshot, with `local_address` as its new local address
// (the snapshot's own local address when it is the same host). The pcb is not yet known
// to lwIP: install callbacks, then register_imported_pcb. Fails, creating nothing, when
// memory is short or the address family does not match.
Result<tcp_pcb*, std::string> import_pcb(const wire::ConnectionSnapshot& snapshot,
                                         const IpAddress& local_address);
// Registers an imported pcb with lwIP. It stays silent until input or the app drives it.
void register_imported_pcb(tcp_pcb* pcb);
// Frees an imported pcb that was never registered (the import was abandoned).
void discard_imported_pcb(tcp_pcb* pcb);

// Starts recovery at once on a pcb whose path just changed: everything unacknowledged is
// sent again now (not after an RTO), and an ACK tells the peer our rcv_nxt.
void restart_transmission(tcp_pcb* pcb);

// Points a pcb at another remote endpoint: its address, its port, and the destination
// port in the TCP headers lwIP already built for its queued segments (they are sent as
// they are). (new_port 0: keep.)
void set_remote_endpoint(tcp_pcb* pcb, const IpAddress& remote, uint16_t port);

// For each active pcb whose remote endpoint is old_remote (and old_port when non-zero),
// sets it to new_remote / new_port (new_port 0: keep) and restarts transmission. Returns
// the flows as they were before: the caller silences them (MigrationGuard), or late
// packets on the old path would be answered with RST. (A client following its server.)
std::vector<FlowKey> rewrite_remote(const IpAddress& old_remote, uint16_t old_port,
                                    const IpAddress& new_remote, uint16_t new_port);
// The same for exactly these pcbs (a client following an ACM that named its connections);
// their peers' silence is counted from now (stack/dead_peer.hpp).
// `restart` false: only the addresses change (the NAT handover restarts them once its
// handshake is through).
std::vector<FlowKey> rewrite_remote(std::span<tcp_pcb* const> pcbs, const IpAddress& new_remote,
                                    uint16_t new_port, bool restart = true);
// The active pcb of `flow`, found by its connection id in O(1): a move of thousands of
// connections must not walk every pcb for each (find_active_pcb). Both ends of a
// connection in one process (a test lab) share the id: then the flow decides, by a walk.
// nullptr when the connection is gone (or is not registered, or has another id).
tcp_pcb* find_connection_pcb(const FlowKey& flow, uint64_t connection_id);

// For each active pcb bound to old_local, rebinds it to new_local and restarts
// transmission (a host whose own address changed). Returns the flows as they were.
std::vector<FlowKey> rewrite_local(const IpAddress& old_local, const IpAddress& new_local);
// The same for exactly these pcbs, without restarting them: a client whose address changed
// must not send on the new 4-tuple before its peer was told (seed 003) and, behind a
// strict NAT, before the synthetic SYN opened it (the Follower holds their output).
std::vector<FlowKey> rewrite_local(std::span<tcp_pcb* const> pcbs, const IpAddress& new_local);

}  // namespace roam::migrate
