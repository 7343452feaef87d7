#include "stack/connection_id.hpp"

#include <new>
#include <unordered_map>
#include <vector>

#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"

namespace roam {

namespace {

// What the pcb's ext arg slot holds:
//   nullptr              no id, not registered in tcp_active_pcbs
//   &registered_no_id    no id, registered (set by the active hook, so that an id given
//                        later, at accept or connected, lands in the index at once)
//   an IdEntry           the id, the pcb and whether it is registered; owned by the slot
//                        and deleted by its destroy callback when lwIP frees the pcb.
struct IdEntry {
  uint64_t id;
  tcp_pcb* pcb;
  bool registered;
  // Registered entries with the same id, newest first (the index points at the newest).
  // Ids are unique between hosts, but both ends of a connection within one process (a
  // test lab) carry the same id, and each must stay findable while the other moves.
  IdEntry* newer = nullptr;
  IdEntry* older = nullptr;
};
char registered_no_id;

// id -> the newest registered entry with that id. Never destroyed: lwIP may free pcbs
// late in exit.
std::unordered_map<uint64_t, IdEntry*>& index() {
  static auto* map = new std::unordered_map<uint64_t, IdEntry*>();
  return *map;
}

void on_active_changed(tcp_pcb* pcb, int active) noexcept;
void on_destroyed(u8_t slot_id, void* data) noexcept;
const tcp_ext_arg_callbacks slot_callbacks{&on_destroyed, nullptr};

// lwIP hands out ext arg slots once per process; the first use takes ours and installs
// the hook (before any pcb exists: see installed_at_start).
uint8_t slot() {
  static const uint8_t id = [] {
    roam_lwip_tcp_active_hook = &on_active_changed;
    return tcp_ext_arg_alloc_id();
  }();
  return id;
}
[[maybe_unused]] const uint8_t installed_at_start = slot();

void* slot_data(const tcp_pcb* pcb) {
  return tcp_ext_arg_get(pcb, slot());
}

IdEntry* entry_of(const tcp_pcb* pcb) {
  void* data = slot_data(pcb);
  return data == nullptr || data == &registered_no_id ? nullptr : static_cast<IdEntry*>(data);
}

void add_to_index(IdEntry* entry) {
  if (entry->id == 0) return;
  IdEntry*& newest = index()[entry->id];
  entry->newer = nullptr;
  entry->older = newest;
  if (newest != nullptr) newest->newer = entry;
  newest = entry;
}

void remove_from_index(IdEntry* entry) {
  if (entry->id == 0) return;
  if (entry->older != nullptr) entry->older->newer = entry->newer;
  if (entry->newer != nullptr) {
    entry->newer->older = entry->older;
  } else if (entry->older != nullptr) {
    index()[entry->id] = entry->older;
  } else {
    index().erase(entry->id);
  }
  entry->newer = entry->older = nullptr;
}

void on_active_changed(tcp_pcb* pcb, int active) noexcept {
  IdEntry* entry = entry_of(pcb);
  if (entry == nullptr) {
    tcp_ext_arg_set(pcb, slot(), active != 0 ? &registered_no_id : nullptr);
    return;
  }
  if (active != 0 && !entry->registered) {
    entry->registered = true;
    add_to_index(entry);
  } else if (active == 0 && entry->registered) {
    entry->registered = false;
    remove_from_index(entry);
  }
}

void on_destroyed(u8_t /*slot_id*/, void* data) noexcept {
  if (data == nullptr || data == &registered_no_id) return;
  auto* entry = static_cast<IdEntry*>(data);
  if (entry->registered) remove_from_index(entry);  // freed without leaving the list first
  delete entry;
}

// `registered`: what the caller knows for certain (accept and connected run on
// registered pcbs), else what the slot says.
void store_id(tcp_pcb* pcb, uint64_t id, bool known_registered) {
  if (pcb == nullptr) return;
  IdEntry* entry = entry_of(pcb);
  if (entry == nullptr) {
    bool registered = known_registered || slot_data(pcb) == &registered_no_id;
    entry = new (std::nothrow) IdEntry{0, pcb, registered, nullptr, nullptr};
    if (entry == nullptr) return;  // out of memory: the connection stays unnamed
    tcp_ext_arg_set(pcb, slot(), entry);
    tcp_ext_arg_set_callbacks(pcb, slot(), &slot_callbacks);
  } else if (known_registered && !entry->registered) {
    entry->registered = true;
  }
  if (entry->registered) remove_from_index(entry);
  entry->id = id;
  if (entry->registered) add_to_index(entry);
}

}  // namespace

uint64_t connection_id_from_isns(uint32_t client_isn, uint32_t server_isn) {
  uint64_t id = (uint64_t{client_isn} << 32) | server_isn;
  return id == 0 ? 1 : id;
}

uint64_t connection_id(const tcp_pcb* pcb) {
  if (pcb == nullptr) return 0;
  const IdEntry* entry = entry_of(pcb);
  return entry == nullptr ? 0 : entry->id;
}

void set_connection_id(tcp_pcb* pcb, uint64_t id) {
  store_id(pcb, id, false);
}

uint64_t assign_connection_id_at_accept(tcp_pcb* pcb) {
  // Accept runs as the handshake's last ACK arrives, before its data is processed:
  // rcv_nxt is still client ISN + 1, and lastack is still our ISN (lwIP sets it to the
  // ISN in tcp_listen_input and moves it only in tcp_receive, after accept).
  uint64_t id = connection_id_from_isns(pcb->rcv_nxt - 1, pcb->lastack);
  store_id(pcb, id, true);
  return id;
}

uint64_t assign_connection_id_at_connected(tcp_pcb* pcb) {
  // The SYN-ACK was just processed: lastack = our ISN + 1, rcv_nxt = server ISN + 1.
  uint64_t id = connection_id_from_isns(pcb->lastack - 1, pcb->rcv_nxt - 1);
  store_id(pcb, id, true);
  return id;
}

tcp_pcb* find_pcb_by_connection_id(uint64_t id) {
  if (id == 0) return nullptr;
  auto it = index().find(id);
  return it == index().end() ? nullptr : it->second->pcb;
}

std::vector<tcp_pcb*> find_pcbs_by_connection_id(uint64_t id) {
  std::vector<tcp_pcb*> out;
  if (id == 0) return out;
  auto it = index().find(id);
  if (it == index().end()) return out;
  for (const IdEntry* entry = it->second; entry != nullptr; entry = entry->older) out.push_back(entry->pcb);
  return out;
}

size_t indexed_connection_count() {
  size_t count = 0;
  for (const auto& [id, newest] : index())
    for (const IdEntry* entry = newest; entry != nullptr; entry = entry->older) ++count;
  return count;
}

}  // namespace roam
