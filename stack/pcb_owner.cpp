#include "stack/pcb_owner.hpp"

#include <deque>
#include <new>
#include <unordered_map>

#include "lwip/priv/tcp_priv.h"
#include "lwip/tcp.h"
#include "roam_lwip_hooks.h"

namespace roam {

namespace {

// What the pcb's ext arg slot holds (nullptr: nothing); owned by the slot and deleted by
// its destroy callback when lwIP frees the pcb.
struct OwnerSlot {
  std::optional<OwnerKey> owner;                  // server side: whose connection this is
  std::shared_ptr<const SynOptionSource> syn;     // client side: what its SYN carries
};

void on_destroyed(u8_t /*slot_id*/, void* data) noexcept {
  delete static_cast<OwnerSlot*>(data);
}
const tcp_ext_arg_callbacks slot_callbacks{&on_destroyed, nullptr};

const OwnerSlot* slot_of(const tcp_pcb* pcb);

// lwIP's option hooks (sys_arch.c forwards to these). Both look at the same thing, the
// armed source, so the length lwIP reserved and the bytes written always agree.
u8_t syn_option_length(const tcp_pcb* pcb) noexcept {
  const OwnerSlot* slot = slot_of(pcb);
  return slot == nullptr || !slot->syn ? 0 : static_cast<u8_t>(slot->syn->option_length());
}

u8_t write_syn_option(const tcp_pcb* pcb, u32_t isn, u16_t remote_port, u8_t* out) noexcept {
  const OwnerSlot* slot = slot_of(pcb);
  if (slot == nullptr || !slot->syn) return 0;
  size_t length = slot->syn->option_length();
  slot->syn->write_option(isn, remote_port, std::span<uint8_t>(out, length));
  return static_cast<u8_t>(length);
}

uint8_t slot() {
  static const uint8_t id = [] {
    roam_lwip_set_syn_option_fns(&syn_option_length, &write_syn_option);
    return tcp_ext_arg_alloc_id();
  }();
  return id;
}
// Before any pcb exists (as connection_id.cpp does).
[[maybe_unused]] const uint8_t installed_at_start = slot();

const OwnerSlot* slot_of(const tcp_pcb* pcb) {
  return pcb == nullptr ? nullptr : static_cast<const OwnerSlot*>(tcp_ext_arg_get(pcb, slot()));
}

OwnerSlot* writable_slot(tcp_pcb* pcb) {
  auto* data = static_cast<OwnerSlot*>(tcp_ext_arg_get(pcb, slot()));
  if (data != nullptr) return data;
  data = new (std::nothrow) OwnerSlot;
  if (data == nullptr) return nullptr;
  tcp_ext_arg_set(pcb, slot(), data);
  tcp_ext_arg_set_callbacks(pcb, slot(), &slot_callbacks);
  return data;
}

// Owners proven by SYNs whose connections were not accepted yet, oldest first.
struct Remembered {
  OwnerKey owner;
  uint32_t isn;
  uint64_t serial;
};
struct SynOwners {
  std::unordered_map<FlowKey, Remembered, FlowKeyHash> by_flow;
  std::deque<std::pair<FlowKey, uint64_t>> order;  // may hold entries adopted since
  uint64_t next_serial = 0;
};
SynOwners& syn_owners() {
  static auto* owners = new SynOwners();  // never destroyed: pcbs may be freed late in exit
  return *owners;
}

}  // namespace

std::optional<OwnerKey> pcb_owner(const tcp_pcb* pcb) {
  const OwnerSlot* slot = slot_of(pcb);
  return slot == nullptr ? std::nullopt : slot->owner;
}

void set_pcb_owner(tcp_pcb* pcb, const OwnerKey& owner) {
  if (pcb == nullptr) return;
  if (OwnerSlot* slot = writable_slot(pcb)) slot->owner = owner;
}

void arm_syn_option(tcp_pcb* pcb, std::shared_ptr<const SynOptionSource> source) {
  if (pcb == nullptr || !source) return;
  if (OwnerSlot* slot = writable_slot(pcb)) slot->syn = std::move(source);
}

void remember_syn_owner(const FlowKey& flow, uint32_t isn, const OwnerKey& owner) {
  SynOwners& s = syn_owners();
  uint64_t serial = s.next_serial++;
  s.by_flow.insert_or_assign(flow, Remembered{owner, isn, serial});
  s.order.emplace_back(flow, serial);
  // Evict the oldest (and drop bookkeeping of adopted ones) beyond the bound.
  while (s.by_flow.size() > max_remembered_syn_owners || s.order.size() > 2 * max_remembered_syn_owners) {
    auto [old_flow, old_serial] = s.order.front();
    s.order.pop_front();
    auto it = s.by_flow.find(old_flow);
    if (it != s.by_flow.end() && it->second.serial == old_serial) s.by_flow.erase(it);
  }
}

bool syn_owner_proven(const FlowKey& flow, uint32_t isn) {
  const SynOwners& s = syn_owners();
  auto it = s.by_flow.find(flow);
  return it != s.by_flow.end() && it->second.isn == isn;
}

void adopt_syn_owner(tcp_pcb* pcb) {
  SynOwners& s = syn_owners();
  if (pcb == nullptr || s.by_flow.empty()) return;
  auto it = s.by_flow.find(flow_of(pcb));
  if (it == s.by_flow.end()) return;
  set_pcb_owner(pcb, it->second.owner);
  s.by_flow.erase(it);
  if (s.by_flow.empty()) s.order.clear();
}

size_t remembered_syn_owner_count() {
  return syn_owners().by_flow.size();
}

}  // namespace roam
