// The one way to include lwIP from C++ in this project.
// <netinet/tcp.h> (pulled in by uv.h) defines TCP_MSS, which clashes with lwIP's option of
// the same name: include it first, drop its macro, then let lwipopts.h define ours.
#pragma once

#include <netinet/tcp.h>
#undef TCP_MSS

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "lwip/init.h"
#include "lwip/ip.h"
#include "lwip/ip_addr.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/tcp.h"
#include "lwip/timeouts.h"
#include "roam_lwip_hooks.h"

namespace roam {

struct PbufDeleter {
  void operator()(pbuf* p) const noexcept {
    if (p != nullptr) pbuf_free(p);
  }
};
// Owns one reference to a pbuf chain.
using PbufPtr = std::unique_ptr<pbuf, PbufDeleter>;

// Appends the bytes of the chain `p` (all tot_len of them) to `out`.
inline void append_pbuf(std::vector<uint8_t>& out, const pbuf& p) {
  const size_t old_size = out.size();
  out.resize(old_size + p.tot_len);
  pbuf_copy_partial(&p, out.data() + old_size, p.tot_len, 0);
}

// lwIP's own lwip_strerr exists only in LWIP_DEBUG builds.
inline const char* lwip_error_name(err_t error) {
  switch (error) {
    case ERR_OK:
      return "ok";
    case ERR_MEM:
      return "out of memory";
    case ERR_BUF:
      return "buffer error";
    case ERR_TIMEOUT:
      return "timeout";
    case ERR_RTE:
      return "no route";
    case ERR_INPROGRESS:
      return "in progress";
    case ERR_VAL:
      return "illegal value";
    case ERR_WOULDBLOCK:
      return "would block";
    case ERR_USE:
      return "address in use";
    case ERR_ALREADY:
      return "already connecting";
    case ERR_ISCONN:
      return "already connected";
    case ERR_CONN:
      return "not connected";
    case ERR_IF:
      return "interface error";
    case ERR_ABRT:
      return "connection aborted";
    case ERR_RST:
      return "connection reset";
    case ERR_CLSD:
      return "connection closed";
    case ERR_ARG:
      return "illegal argument";
    default:
      return "unknown lwIP error";
  }
}

}  // namespace roam
