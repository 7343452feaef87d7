/* Hook functions that lwIP's core calls (wired in lwipopts.h). Implemented in sys_arch.c,
 * which forwards the IPv4 input hook to whatever filter the Node registered at run time,
 * so the lwIP library does not depend on the stack library above it. */
#ifndef ROAMSTACK_LWIP_HOOKS_H
#define ROAMSTACK_LWIP_HOOKS_H

#include "lwip/arch.h"

#ifdef __cplusplus
extern "C" {
#endif
struct pbuf;
struct netif;
union ip_addr_u;

/* Returns non-zero when the filter consumed the packet (and freed the pbuf). */
int roam_lwip_ip4_input_hook(struct pbuf* p, struct netif* inp);
typedef int (*roam_lwip_ip4_input_fn)(struct pbuf* p, struct netif* inp);
void roam_lwip_set_ip4_input_hook(roam_lwip_ip4_input_fn fn);

u32_t roam_lwip_tcp_isn(const void* local_ip, u16_t local_port, const void* remote_ip, u16_t remote_port);
#ifdef __cplusplus
}
#endif
#endif
