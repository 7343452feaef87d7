// Importer: the receiving half of a server move (DESIGN.md section 4), for any caller that
// hands it session transfers: it decodes each one (bad frames and snapshots are refused
// and counted, nothing changes), imports the pcb with this host's own address, rebuilds
// the session through the host's SessionKinds, and *parks* it (MigrationGuard): silent,
// no timers, until the client's first packet arrives on the new path. It owns the guard
// and the HandoverResponder: a client's synthetic SYN rebinds a parked import to the
// address its NAT presents, inside this layer. Parked imports whose client never comes
// are dropped without a packet after `parked_timeout_ms`. Fed the time by its owner;
// owns no timer. Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>

#include "base/ip_address.hpp"
#include "base/result.hpp"
#include "stack/flow_key.hpp"
#include "stack/migrate/handover_responder.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/session_table.hpp"
#include "stack/node.hpp"

namespace roam {
class SegmentMacGuard;
}

namespace roam::migrate {

struct ImportConfig {
  bool handover = true;  // answer authenticated synthetic SYNs (--handover always)
  // An imported session whose client never arrives is dropped after this time (the old
  // server may have resumed it after a timeout, or the client is gone).
  uint64_t parked_timeout_ms = 60'000;
  IpAddress address4;  // this server's carrier addresses
  std::optional<IpAddress> address6;
};

struct ImportCounters {
  uint64_t sessions_imported = 0;
  uint64_t imports_refused = 0;  // bad frame or snapshot, unknown kind, no address, no pcb memory
  uint64_t parked_expired = 0;
};

class Importer {
 public:
  // Called when a parked import's client arrived on the new path (its connection id).
  using ArrivedFn = std::function<void(uint64_t connection_id)>;

  Importer(Node& node, SessionTable& table, ImportConfig config, SegmentMacGuard* segment_mac = nullptr);
  Importer(const Importer&) = delete;
  Importer& operator=(const Importer&) = delete;

  void set_on_arrived(ArrivedFn on_arrived) { on_arrived_ = std::move(on_arrived); }

  // One `session` frame payload (control_frame.hpp). Ok: the address this host gave the
  // connection; otherwise the reason, and nothing changed.
  Result<IpAddress, std::string> import_session(std::span<const uint8_t> payload, uint64_t now_ms);

  // Drops parked imports whose client never came; runs the guard and the responder (the
  // flows silenced and the handovers expected expire). Returns the next deadline (loop ms).
  uint64_t on_time(uint64_t now_ms);

  // Unparks everything (shutdown: the sessions' own close then works on registered pcbs).
  void shutdown();

  MigrationGuard& guard() { return guard_; }
  const MigrationGuard& guard() const { return guard_; }
  const HandoverResponder& handover() const { return responder_; }
  const ImportCounters& counters() const { return counters_; }
  size_t parked_count() const { return parked_.size(); }

 private:
  tcp_pcb* rebind_parked(const FlowKey& parked, const IpAddress& client, uint16_t port);
  const IpAddress& own_address(uint8_t version) const;

  Node& node_;
  SessionTable& table_;
  ImportConfig config_;
  SegmentMacGuard* segment_mac_;
  // Before the guard in the input chain: a synthetic SYN must never look like the
  // client's arrival to it.
  HandoverResponder responder_;
  MigrationGuard guard_;
  ArrivedFn on_arrived_;
  // Parked imports -> when they expire (loop ms). Erased when the client arrives.
  std::unordered_map<MovableSession*, uint64_t> parked_;
  uint64_t next_expiry_ms_ = UINT64_MAX;
  ImportCounters counters_;
  bool shut_down_ = false;
};

}  // namespace roam::migrate
