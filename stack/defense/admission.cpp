#include "stack/defense/admission.hpp"

#include <fmt/format.h>

#include <unordered_map>
#include <unordered_set>

#include "lwip/priv/tcp_priv.h"
#include "stack/lwip_address.hpp"

namespace roam::defense {

namespace {

struct PrefixHash {
  size_t operator()(const SourcePrefix& p) const noexcept { return std::hash<uint64_t>()(p.bits ^ p.version); }
};

enum class Held : uint8_t { half_open, established };
struct Tracked {
  SourcePrefix prefix;
  FlowKey flow;
  Held held;
};

// Never destroyed: lwIP may free pcbs late in exit, after any owner is gone.
struct Tables {
  std::unordered_map<SourcePrefix, size_t, PrefixHash> half_open;
  std::unordered_map<SourcePrefix, size_t, PrefixHash> established;
  std::unordered_set<FlowKey, FlowKeyHash> half_open_flows;
};
Tables& tables() {
  static auto* t = new Tables();
  return *t;
}

void count_down(std::unordered_map<SourcePrefix, size_t, PrefixHash>& map, const SourcePrefix& prefix) {
  auto it = map.find(prefix);
  if (it == map.end()) return;
  if (--it->second == 0) map.erase(it);
}

void release(Tracked* tracked) {
  auto& t = tables();
  if (tracked->held == Held::half_open) {
    count_down(t.half_open, tracked->prefix);
    t.half_open_flows.erase(tracked->flow);
  } else {
    count_down(t.established, tracked->prefix);
  }
}

void on_destroyed(u8_t /*slot*/, void* data) noexcept {
  auto* tracked = static_cast<Tracked*>(data);
  if (tracked == nullptr) return;
  release(tracked);
  delete tracked;
}
err_t on_passive_open(u8_t slot, tcp_pcb_listen* listener, tcp_pcb* pcb) noexcept;
const tcp_ext_arg_callbacks pcb_callbacks{&on_destroyed, nullptr};
const tcp_ext_arg_callbacks listener_callbacks{nullptr, &on_passive_open};
const tcp_ext_arg_callbacks no_callbacks{nullptr, nullptr};  // lwIP asserts on nullptr

uint8_t slot() {
  static const uint8_t id = tcp_ext_arg_alloc_id();
  return id;
}

void track(tcp_pcb* pcb, Held held) {
  auto* tracked = new Tracked{source_prefix(from_lwip(pcb->remote_ip)), flow_of(pcb), held};
  auto& t = tables();
  if (held == Held::half_open) {
    ++t.half_open[tracked->prefix];
    t.half_open_flows.insert(tracked->flow);
  } else {
    ++t.established[tracked->prefix];
  }
  tcp_ext_arg_set(pcb, slot(), tracked);
  tcp_ext_arg_set_callbacks(pcb, slot(), &pcb_callbacks);
}

// lwIP made a SYN_RCVD pcb from a SYN on a watched listener (tcp_listen_input).
err_t on_passive_open(u8_t /*slot*/, tcp_pcb_listen* /*listener*/, tcp_pcb* pcb) noexcept {
  track(pcb, Held::half_open);
  return ERR_OK;
}

}  // namespace

std::string SourcePrefix::to_string() const {
  if (version == 4)
    return fmt::format("{}.{}.{}.0/24", (bits >> 56) & 0xff, (bits >> 48) & 0xff, (bits >> 40) & 0xff);
  return fmt::format("{:x}:{:x}:{:x}:{:x}::/64", (bits >> 48) & 0xffff, (bits >> 32) & 0xffff, (bits >> 16) & 0xffff,
                     bits & 0xffff);
}

SourcePrefix source_prefix(const IpAddress& address) {
  SourcePrefix prefix;
  prefix.version = address.version;
  const size_t bytes = address.version == 4 ? 3 : 8;
  for (size_t i = 0; i < 8; ++i) prefix.bits = (prefix.bits << 8) | (i < bytes ? address.bytes[i] : 0);
  return prefix;
}

size_t half_open_of(const SourcePrefix& prefix) {
  auto it = tables().half_open.find(prefix);
  return it == tables().half_open.end() ? 0 : it->second;
}

size_t established_of(const SourcePrefix& prefix) {
  auto it = tables().established.find(prefix);
  return it == tables().established.end() ? 0 : it->second;
}

bool lwip_half_open(const FlowKey& flow) {
  return tables().half_open_flows.count(flow) != 0;
}

size_t half_open_total() {
  return tables().half_open_flows.size();
}

void watch_listener_pcb(tcp_pcb* listen_pcb) {
  // A listening pcb shares the ext arg layout of TCP_PCB_COMMON: lwIP reads these
  // callbacks from it in tcp_ext_arg_invoke_callbacks_passive_open.
  tcp_ext_arg_set(listen_pcb, slot(), nullptr);
  tcp_ext_arg_set_callbacks(listen_pcb, slot(), &listener_callbacks);
}

void unwatch_listener_pcb(tcp_pcb* listen_pcb) {
  tcp_ext_arg_set_callbacks(listen_pcb, slot(), &no_callbacks);
}

bool admit_established(tcp_pcb* pcb, size_t cap) {
  auto* tracked = static_cast<Tracked*>(tcp_ext_arg_get(pcb, slot()));
  const SourcePrefix prefix = source_prefix(from_lwip(pcb->remote_ip));
  if (cap != 0 && established_of(prefix) >= cap) return false;  // the destroy callback releases it
  if (tracked != nullptr) {
    if (tracked->held == Held::established) return true;
    release(tracked);
    tracked->held = Held::established;
    ++tables().established[tracked->prefix];
    return true;
  }
  track(pcb, Held::established);
  return true;
}

}  // namespace roam::defense
