/* lwIP architecture glue for Linux (x86_64 / arm64 little-endian, glibc). */
#ifndef ROAMSTACK_ARCH_CC_H
#define ROAMSTACK_ARCH_CC_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>

#define LWIP_ERRNO_STDINCLUDE 1
#define LWIP_PROVIDE_ERRNO_DISABLED 1

#ifdef __cplusplus
extern "C" {
#endif
uint32_t roam_lwip_rand(void);
#ifdef __cplusplus
}
#endif
#define LWIP_RAND() (roam_lwip_rand())

/* An lwIP assertion is a bug in our use of lwIP (never the network's input): stop loudly. */
#define LWIP_PLATFORM_DIAG(x) \
  do {                        \
    printf x;                 \
  } while (0)
#define LWIP_PLATFORM_ASSERT(x)                                                        \
  do {                                                                                 \
    fprintf(stderr, "lwIP assertion \"%s\" failed at %s:%d\n", x, __FILE__, __LINE__); \
    abort();                                                                           \
  } while (0)

#endif
