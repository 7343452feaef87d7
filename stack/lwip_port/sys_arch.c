/* The few OS services lwIP needs under NO_SYS=1: a millisecond clock, random numbers,
 * and the hook trampolines declared in roam_lwip_hooks.h. */
#include <sys/random.h>
#include <time.h>

#include "lwip/opt.h"
#include "lwip/sys.h"
#include "lwip/ip.h"
#include "lwip/netif.h"
#include "lwip/tcp.h"
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

static roam_lwip_ip4_input_fn ip4_input_fn = 0;

void roam_lwip_set_ip4_input_hook(roam_lwip_ip4_input_fn fn) { ip4_input_fn = fn; }

int roam_lwip_ip4_input_hook(struct pbuf* p, struct netif* inp) {
  return ip4_input_fn ? ip4_input_fn(p, inp) : 0;
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

/* RFC 6528 asks for unpredictable initial sequence numbers; lwIP's default is a counter. */
u32_t roam_lwip_tcp_isn(const void* local_ip, u16_t local_port, const void* remote_ip,
                        u16_t remote_port) {
  (void)local_ip;
  (void)local_port;
  (void)remote_ip;
  (void)remote_port;
  return roam_lwip_rand();
}
