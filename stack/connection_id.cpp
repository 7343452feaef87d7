#include "stack/connection_id.hpp"

#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

namespace roam {

namespace {

// lwIP hands out ext arg slots once per process; the first use takes ours.
uint8_t slot() {
  static const uint8_t id = tcp_ext_arg_alloc_id();
  return id;
}

}  // namespace

uint64_t connection_id_from_isns(uint32_t client_isn, uint32_t server_isn) {
  uint64_t id = (uint64_t{client_isn} << 32) | server_isn;
  return id == 0 ? 1 : id;
}

uint64_t connection_id(const tcp_pcb* pcb) {
  if (pcb == nullptr) return 0;
  return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(tcp_ext_arg_get(pcb, slot())));
}

void set_connection_id(tcp_pcb* pcb, uint64_t id) {
  static_assert(sizeof(uintptr_t) == sizeof(uint64_t), "the id is stored in a pointer-sized slot");
  if (pcb != nullptr) tcp_ext_arg_set(pcb, slot(), reinterpret_cast<void*>(static_cast<uintptr_t>(id)));
}

uint64_t assign_connection_id_at_accept(tcp_pcb* pcb) {
  // Accept runs as the handshake's last ACK arrives, before its data is processed:
  // rcv_nxt is still client ISN + 1, and lastack is still our ISN (lwIP sets it to the
  // ISN in tcp_listen_input and moves it only in tcp_receive, after accept).
  uint64_t id = connection_id_from_isns(pcb->rcv_nxt - 1, pcb->lastack);
  set_connection_id(pcb, id);
  return id;
}

uint64_t assign_connection_id_at_connected(tcp_pcb* pcb) {
  // The SYN-ACK was just processed: lastack = our ISN + 1, rcv_nxt = server ISN + 1.
  uint64_t id = connection_id_from_isns(pcb->lastack - 1, pcb->rcv_nxt - 1);
  set_connection_id(pcb, id);
  return id;
}

tcp_pcb* find_pcb_by_connection_id(uint64_t id) {
  if (id == 0) return nullptr;
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next)
    if (connection_id(pcb) == id) return pcb;
  return nullptr;
}

}  // namespace roam
