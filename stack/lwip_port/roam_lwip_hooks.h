/* Hook functions that lwIP's core calls (wired in lwipopts.h). Implemented in sys_arch.c,
 * which forwards them to whatever the Node registered at run time, so the lwIP library
 * does not depend on the stack library above it. */
#ifndef ROAMSTACK_LWIP_HOOKS_H
#define ROAMSTACK_LWIP_HOOKS_H

#include "lwip/arch.h"

#ifdef __cplusplus
extern "C" {
#endif
struct pbuf;
struct netif;
struct tcp_pcb;
union ip_addr_u;

/* TCP segmentation offload (cmake/LwipPatches.cmake, patch "TSO segments"). The Node
 * registers a function telling how many TCP payload bytes one segment may carry on a
 * netif whose link cuts segments itself (0: the link does not, segments stay one MSS). */
typedef u16_t (*roam_lwip_tso_limit_fn)(struct netif* n);
void roam_lwip_set_tso_limit_fn(roam_lwip_tso_limit_fn fn);
/* Size of the segments tcp_write builds for `pcb`: its MSS, or on a TSO netif the largest
 * multiple of the MSS within the netif's limit; never above `window_limit` (rounded down
 * to whole MSS when above one MSS). Without TSO: LWIP_MIN(pcb->mss, window_limit). */
u16_t roam_lwip_tcp_segment_size(const struct tcp_pcb* pcb, u16_t window_limit);
/* The MSS of the pcb whose segment the netif output is sending right now (0 otherwise):
 * the gso_size a TSO link cuts a larger segment into. */
extern u16_t roam_lwip_tcp_tx_mss;

/* Patch "sequence check first" (cmake/LwipPatches.cmake). RFC 793's first check on a
 * segment for a synchronized connection: does its sequence number fall in the receive
 * window? lwIP processed the ACK field (and window updates) of every segment before
 * looking, so a blind attacker's random segment could acknowledge data the peer never
 * got (about inflight / 2^32 of them do). Non-zero when acceptable. `right_edge`: the
 * right edge of the window we announced (never shrinks). */
int roam_lwip_tcp_segment_acceptable(u32_t rcv_nxt, u32_t rcv_wnd, u32_t right_edge, u32_t seqno, u32_t tcplen);
/* Whether an unacceptable segment may be answered with an ACK now: always for a segment
 * just behind rcv_nxt (a retransmission whose ACK was lost) and for a keepalive probe
 * (empty, at rcv_nxt - 1), otherwise at most
 * roam_lwip_challenge_ack_limit per second for the whole stack (RFC 5961 section 7), so
 * a flood of forgeries does not turn into a flood of ACKs. Counts what it refuses. */
int roam_lwip_tcp_unacceptable_ack_allowed(u32_t rcv_nxt, u32_t seqno, u32_t tcplen);
#define ROAM_LWIP_CHALLENGE_ACK_LIMIT 1000
extern u32_t roam_lwip_unacceptable_segments;  /* dropped by the sequence check */
extern u32_t roam_lwip_challenge_acks_suppressed;

/* Owner proofs (stack/pcb_owner.hpp): an option a pcb adds to its SYN. lwIP asks for
 * the length of a segment's options when it builds the segment and again when it sends
 * it; both forwarders consult the same registered functions, which answer from the pcb
 * alone, so the two always agree. Only SYN segments carry it: with timestamps and SACK
 * off (asserted in sys_arch.c), lwIP's own option length is non-zero exactly for SYNs. */
struct tcp_hdr;
typedef u8_t (*roam_lwip_syn_option_length_fn)(const struct tcp_pcb* pcb);
typedef u8_t (*roam_lwip_syn_option_write_fn)(const struct tcp_pcb* pcb, u32_t isn, u16_t remote_port, u8_t* out);
void roam_lwip_set_syn_option_fns(roam_lwip_syn_option_length_fn length, roam_lwip_syn_option_write_fn write);
u8_t roam_lwip_tcp_option_length(const struct tcp_pcb* pcb, u8_t internal_length);
u32_t* roam_lwip_tcp_add_options(struct pbuf* p, struct tcp_hdr* hdr, const struct tcp_pcb* pcb, u32_t* opts);

/* Patch "transparent" (cmake/LwipPatches.cmake; stack/transparent_listener.hpp): one netif
 * takes every packet that comes in on it whatever its destination, and one listening pcb
 * on it catches SYNs to any destination `catches` accepts (`dest` is an ip_addr_t*,
 * `port` in host order). Unset: neither hook matches anything. */
struct tcp_pcb_listen;
typedef int (*roam_lwip_listen_catches_fn)(const struct tcp_pcb_listen* lpcb, const void* dest, u16_t port);
void roam_lwip_set_transparent(const struct netif* n, roam_lwip_listen_catches_fn catches);
int roam_lwip_netif_accepts_any(const struct netif* n);
int roam_lwip_tcp_listen_catches(const struct tcp_pcb_listen* lpcb, const void* dest, u16_t port);

u32_t roam_lwip_tcp_isn(const void* local_ip, u16_t local_port, const void* remote_ip, u16_t remote_port);
#ifdef __cplusplus
}
#endif
#endif
