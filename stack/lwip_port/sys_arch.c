/* The few OS services lwIP needs under NO_SYS=1: a millisecond clock, random numbers,
 * and the hook trampolines declared in roam_lwip_hooks.h. */
#include <sys/random.h>
#include <time.h>

#include "lwip/opt.h"
#include "lwip/sys.h"
#include "lwip/ip.h"
#include "lwip/netif.h"
#include "lwip/tcp.h"
#include "lwip/prot/tcp.h"
#include "roam_lwip_hooks.h"

u32_t sys_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (u32_t)((u64_t)ts.tv_sec * 1000u + (u64_t)ts.tv_nsec / 1000000u);
}

u32_t roam_lwip_rand(void) {
  u32_t value = 0;
  /* getrandom on 4 bytes never blocks once the pool is initialised, nor returns short. */
  if (getrandom(&value, sizeof value, 0) != (ssize_t)sizeof value) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    value = (u32_t)ts.tv_nsec * 2654435761u;
  }
  return value;
}

static roam_lwip_tso_limit_fn tso_limit_fn = 0;
u16_t roam_lwip_tcp_tx_mss = 0;

void roam_lwip_set_tso_limit_fn(roam_lwip_tso_limit_fn fn) { tso_limit_fn = fn; }

u16_t roam_lwip_tcp_segment_size(const struct tcp_pcb* pcb, u16_t window_limit) {
  u16_t size = pcb->mss;
  if (tso_limit_fn != 0 && pcb->mss > 0) {
    /* tcp_write runs once per application write, not per packet: one route lookup is cheap. */
    /* (tcp_out.c's own tcp_route is static: the same choice, bound netif or ip_route) */
    struct netif* n = pcb->netif_idx != NETIF_NO_INDEX ? netif_get_by_index(pcb->netif_idx)
                                                        : ip_route(&pcb->local_ip, &pcb->remote_ip);
    u16_t limit = n != 0 ? tso_limit_fn(n) : 0;
    if (limit > pcb->mss) size = (u16_t)((limit / pcb->mss) * pcb->mss);
  }
  if (window_limit < size) {
    size = window_limit;
    if (size > pcb->mss) size = (u16_t)((size / pcb->mss) * pcb->mss);
  }
  return size;
}

/* Owner proofs: see roam_lwip_hooks.h. */
#if LWIP_TCP_TIMESTAMPS || LWIP_TCP_SACK_OUT
#error "the SYN option hooks tell SYNs by lwIP's own option length: timestamps and SACK must stay off"
#endif
static roam_lwip_syn_option_length_fn syn_option_length_fn = 0;
static roam_lwip_syn_option_write_fn syn_option_write_fn = 0;

void roam_lwip_set_syn_option_fns(roam_lwip_syn_option_length_fn length, roam_lwip_syn_option_write_fn write) {
  syn_option_length_fn = length;
  syn_option_write_fn = write;
}

u8_t roam_lwip_tcp_option_length(const struct tcp_pcb* pcb, u8_t internal_length) {
  if (internal_length == 0 || pcb == 0 || syn_option_length_fn == 0) return internal_length;
  return (u8_t)(internal_length + syn_option_length_fn(pcb));
}

u32_t* roam_lwip_tcp_add_options(struct pbuf* p, struct tcp_hdr* hdr, const struct tcp_pcb* pcb, u32_t* opts) {
  (void)p;
  if (pcb == 0 || syn_option_write_fn == 0 || (TCPH_FLAGS(hdr) & TCP_SYN) == 0) return opts;
  u8_t written = syn_option_write_fn(pcb, lwip_ntohl(hdr->seqno), lwip_ntohs(hdr->dest), (u8_t*)opts);
  return opts + written / 4;
}

/* RFC 6528 asks for unpredictable initial sequence numbers; lwIP's default is a counter. */
u32_t roam_lwip_tcp_isn(const void* local_ip, u16_t local_port, const void* remote_ip,
                        u16_t remote_port) {
  (void)local_ip;
  (void)local_port;
  (void)remote_ip;
  (void)remote_port;
  return roam_lwip_rand();
}

/* Patch "sequence check first": see roam_lwip_hooks.h. */
u32_t roam_lwip_unacceptable_segments;
u32_t roam_lwip_challenge_acks_suppressed;

static int seq_in(u32_t seq, u32_t left, u32_t right) { /* left <= seq < right, modulo 2^32 */
  return (u32_t)(seq - left) < (u32_t)(right - left);
}

int roam_lwip_tcp_segment_acceptable(u32_t rcv_nxt, u32_t rcv_wnd, u32_t right_edge, u32_t seqno, u32_t tcplen) {
  u32_t right = rcv_nxt + rcv_wnd;
  if ((s32_t)(right_edge - right) > 0) right = right_edge;
  if (right == rcv_nxt) return seqno == rcv_nxt; /* zero window: only ACKs and probes at rcv_nxt */
  if (tcplen == 0) return seq_in(seqno, rcv_nxt, right);
  return seq_in(seqno, rcv_nxt, right) || seq_in(seqno + tcplen - 1, rcv_nxt, right);
}

int roam_lwip_tcp_unacceptable_ack_allowed(u32_t rcv_nxt, u32_t seqno, u32_t tcplen) {
  static u32_t window_start;
  static u32_t sent_in_window;
  ++roam_lwip_unacceptable_segments;
  /* Old data we already have (it ends at or before rcv_nxt, within a window's length):
   * the peer retransmits because our ACK was lost, and must get one. */
  if (tcplen > 0 && seq_in(seqno + tcplen, rcv_nxt - TCP_WND, rcv_nxt + 1)) return 1;
  /* A keepalive probe (RFC 1122 4.2.3.6: no data, seq = rcv_nxt - 1) must be answered
   * however many connections probe at once, or live peers are declared dead
   * (stack/dead_peer.hpp). A blind forger hits this one sequence number with odds 2^-32. */
  if (tcplen == 0 && seqno == rcv_nxt - 1) return 1;
  u32_t now = sys_now();
  if (now - window_start >= 1000) {
    window_start = now;
    sent_in_window = 0;
  }
  if (sent_in_window >= ROAM_LWIP_CHALLENGE_ACK_LIMIT) {
    ++roam_lwip_challenge_acks_suppressed;
    return 0;
  }
  ++sent_in_window;
  return 1;
}

/* Patch "transparent": see roam_lwip_hooks.h. */
static const struct netif* transparent_netif = 0;
static roam_lwip_listen_catches_fn listen_catches_fn = 0;

void roam_lwip_set_transparent(const struct netif* n, roam_lwip_listen_catches_fn catches) {
  transparent_netif = n;
  listen_catches_fn = catches;
}

int roam_lwip_netif_accepts_any(const struct netif* n) {
  return n != 0 && n == transparent_netif;
}

int roam_lwip_tcp_listen_catches(const struct tcp_pcb_listen* lpcb, const void* dest, u16_t port) {
  return listen_catches_fn != 0 && listen_catches_fn(lpcb, dest, port);
}
