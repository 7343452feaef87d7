#include "stack/migrate/migration_guard.hpp"

#include "lwip/priv/tcp_priv.h"
#include "stack/lwip_address.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "base/log.hpp"

namespace roam::migrate {

MigrationGuard::MigrationGuard(Node& node, uint64_t silence_ms) : node_(node), silence_ms_(silence_ms) {
  node_.add_input_filter(InputStage::guard, this);
  node_.add_output_filter(this);
}

MigrationGuard::~MigrationGuard() {
  node_.remove_input_filter(this);
  node_.remove_output_filter(this);
}

void MigrationGuard::silence(const FlowKey& key, uint64_t now_ms) {
  if (now_ms == at_next_on_time) {
    silenced_[key] = UINT64_MAX;
    unstamped_.push_back(key);
    return;
  }
  uint64_t at = now_ms + silence_ms_;
  silenced_[key] = at;
  expiries_.push({at, key});
}

void MigrationGuard::unsilence(const FlowKey& key) {
  silenced_.erase(key);
}

uint64_t MigrationGuard::on_time(uint64_t now_ms) {
  for (const FlowKey& key : unstamped_) {
    auto it = silenced_.find(key);
    if (it == silenced_.end() || it->second != UINT64_MAX) continue;  // unsilenced or stamped since
    it->second = now_ms + silence_ms_;
    expiries_.push({it->second, key});
  }
  unstamped_.clear();
  // Each silenced flow's own expiry is in expiries_ (pushed whenever it is set), so an
  // element that does not match its flow (unsilenced, or silenced again) is stale.
  while (!expiries_.empty()) {
    const Expiry& due = expiries_.top();
    auto it = silenced_.find(due.key);
    bool stale = it == silenced_.end() || it->second != due.at_ms;
    if (!stale && due.at_ms > now_ms) break;
    if (!stale) silenced_.erase(it);
    expiries_.pop();
  }
  return expiries_.empty() ? UINT64_MAX : expiries_.top().at_ms;
}

void MigrationGuard::park(const FlowKey& key, tcp_pcb* pcb, std::function<void()> on_unparked) {
  silenced_.erase(key);  // the flow may come back to a host it once left
  parked_[key] = Parked{pcb, std::move(on_unparked)};
}

void MigrationGuard::unpark_all() {
  for (auto& [key, entry] : parked_) register_imported_pcb(entry.pcb);
  parked_.clear();
}

tcp_pcb* MigrationGuard::repark(const FlowKey& from, const FlowKey& to) {
  auto it = parked_.find(from);
  if (it == parked_.end()) return nullptr;
  if (from == to) return it->second.pcb;
  if (parked_.count(to) != 0 || find_active_pcb(to) != nullptr) return nullptr;
  Parked entry = std::move(it->second);
  parked_.erase(it);
  set_remote_endpoint(entry.pcb, to.remote, to.remote_port);
  silenced_.erase(to);
  tcp_pcb* pcb = entry.pcb;
  parked_.emplace(to, std::move(entry));
  return pcb;
}

void MigrationGuard::forget_parked(const FlowKey& key) {
  parked_.erase(key);
}

FilterVerdict MigrationGuard::on_input(const InboundPacket& packet) {
  if (silenced_.empty() && parked_.empty() && watched_.empty()) return FilterVerdict::pass;
  if (!packet.tcp) return FilterVerdict::pass;
  const FlowKey* key = &packet.tcp->flow;
  if (!watched_.empty()) {
    auto watched = watched_.find(*key);
    if (watched != watched_.end()) {
      if (watched->second) node_.defer(std::move(watched->second));
      watched_.erase(watched);
    }
  }
  if (!silenced_.empty()) {
    auto it = silenced_.find(*key);
    if (it != silenced_.end()) {
      if (it->second > packet.now_ms) {
        ++counters_.silenced_input_drops;
        return FilterVerdict::drop;
      }
      silenced_.erase(it);
    }
  }
  auto parked = parked_.find(*key);
  if (parked == parked_.end()) return FilterVerdict::pass;
  // The peer reached us on the new path: lwIP must know the pcb before it sees the packet.
  Parked entry = std::move(parked->second);
  parked_.erase(parked);
  ++counters_.unparked;
  register_imported_pcb(entry.pcb);
  FlowKey flow = *key;
  node_.defer([flow, done = std::move(entry.on_unparked)] {
    // Look the pcb up again: the packet may have been a RST that freed it.
    if (tcp_pcb* pcb = find_active_pcb(flow)) restart_transmission(pcb);
    if (done) done();
  });
  return FilterVerdict::pass;
}

FilterVerdict MigrationGuard::on_output(std::span<const uint8_t> packet) {
  if (parked_.empty()) return FilterVerdict::pass;
  auto key = outbound_flow(packet);
  if (!key || parked_.count(*key) == 0) return FilterVerdict::pass;
  ++counters_.parked_output_drops;
  return FilterVerdict::drop;
}

}  // namespace roam::migrate
