// Importer: the receiving half of a server move (DESIGN.md section 4), for any caller that
// hands it session transfers: it decodes each one and checks every leg (bad frames and
// snapshots, connection id 0, an id already live or parked here, a flow that collides with
// a connection here: refused and counted, nothing changes), imports every leg's pcb with
// this host's own address (all legs or none), rebuilds the session through the host's
// SessionKinds, and *parks* each leg (MigrationGuard): silent, no timers, until its peer's
// first packet arrives on the new path. A client leg's client was told by the old host; an
// origin leg's origin must be told by this host (the tell-origin hook, issue 12). It owns
// the guard and the HandoverResponder: a client's synthetic SYN rebinds a parked import to
// the address its NAT presents, inside this layer. Parked imports whose peers never come
// are dropped after `parked_timeout_ms`. Fed the time by its owner; owns no timer. Loop
// thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/ip_address.hpp"
#include "base/result.hpp"
#include "stack/flow_key.hpp"
#include "stack/migrate/handover_responder.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/precopy.hpp"
#include "stack/migrate/session_table.hpp"
#include "stack/node.hpp"
#include "stack/wire/connection_snapshot.hpp"

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
  uint64_t legs_imported = 0;
  // Every refusal (bad frame or snapshot, unknown kind, no address, no pcb memory, the
  // kind refused the legs, and the three below).
  uint64_t imports_refused = 0;
  uint64_t refused_no_id = 0;          // a leg with connection id 0
  uint64_t refused_duplicate = 0;      // a leg whose id is live or parked here (a replay, a duplicate)
  uint64_t refused_flow_collision = 0;  // a leg whose flow here is taken (or taken by another leg)
  uint64_t parked_expired = 0;
  uint64_t refused_precopy_mismatch = 0;  // a delta snapshot whose pre-copied bytes are not here
  uint64_t precopy_bytes_used = 0;        // pre-copied bytes spliced into imported connections
  uint64_t origin_legs_untold = 0;  // origin legs imported with no tell-origin hook set
  uint64_t peer_moves_expected = 0;  // live connections armed for their peer's handover
  uint64_t peer_moves_rebound = 0;   // ...whose peer's SYN arrived: rebound and restarted
};

// An origin leg that now lives here: the flow as its origin knows it (the old host's
// address) and as it is here. Its origin goes on sending to the old host (which drops it:
// silenced) until told; its first packet to this host unparks the leg.
struct OriginLegMoved {
  uint64_t connection_id = 0;
  tcp_pcb* pcb = nullptr;  // parked here; valid in the call only
  FlowKey old_flow;  // local = the old host
  FlowKey new_flow;  // local = this host, same port
};

class Importer {
 public:
  // Called when a parked leg's peer arrived on the new path (its connection id).
  using ArrivedFn = std::function<void(uint64_t connection_id)>;
  // Tells an origin leg's origin where its connection went (seed 003, "a client moves":
  // the host whose address changed tells its peer, with an authenticated ACM). Issue 12
  // (the proxy) implements it on the channel to the origin; until then nothing tells the
  // origin and the leg stays parked until it expires.
  using TellOriginFn = std::function<void(const OriginLegMoved&)>;

  Importer(Node& node, SessionTable& table, ImportConfig config, SegmentMacGuard* segment_mac = nullptr);
  Importer(const Importer&) = delete;
  Importer& operator=(const Importer&) = delete;

  void set_on_arrived(ArrivedFn on_arrived) { on_arrived_ = std::move(on_arrived); }
  // Called for each leg of a session just imported (its connection id).
  void set_on_imported(ArrivedFn on_imported) { on_imported_ = std::move(on_imported); }
  void set_tell_origin(TellOriginFn tell_origin) { tell_origin_ = std::move(tell_origin); }

  // One `session` frame payload (control_frame.hpp). Ok: the address this host gave the
  // connections (its first client leg's); otherwise the reason, and nothing changed.
  // `precopied`: what the sending peer pre-copied (precopy.hpp); a delta snapshot is made
  // whole from it, or refused when its ranges are not held. The legs' pre-copied bytes
  // leave the store either way (used, or discarded with a refusal).
  Result<IpAddress, std::string> import_session(std::span<const uint8_t> payload, uint64_t now_ms,
                                                PrecopyStore* precopied = nullptr);

  // A live connection here whose peer's end moved (seed 003; the peer said so on its
  // authenticated channel): its synthetic SYN with a tag made with `token` rebinds the
  // connection to where the SYN came from, is answered like an import's, and then the
  // connection retransmits at once toward the peer's new place. False when the
  // handover is off here.
  bool expect_peer_move(tcp_pcb* pcb, uint64_t connection_id, const crypto::HandoverToken& token, uint64_t now_ms);
  // The same without a handover: the peer is at `peer` (same port), reachable directly;
  // the connection points there now and retransmits at once. False when that 4-tuple is
  // taken here.
  bool peer_moved_to(tcp_pcb* pcb, uint64_t connection_id, const IpAddress& peer);

  // Drops parked imports whose peers never came; runs the guard and the responder (the
  // flows silenced and the handovers expected expire). A session whose legs all stayed
  // parked is dropped without a packet; one with some legs arrived is closed by its app
  // (a proxy cannot go on with one leg). Returns the next deadline (loop ms).
  uint64_t on_time(uint64_t now_ms);

  // Unparks everything (shutdown: the sessions' own close then works on registered pcbs).
  void shutdown();

  MigrationGuard& guard() { return guard_; }
  const MigrationGuard& guard() const { return guard_; }
  const HandoverResponder& handover() const { return responder_; }
  const ImportCounters& counters() const { return counters_; }
  size_t parked_count() const { return parked_.size(); }
  // A leg with this connection id is parked here (imported, its peer not heard yet).
  bool parked_id(uint64_t id) const { return parked_ids_.count(id) != 0; }

 private:
  // A session with legs still parked.
  struct ParkedImport {
    uint64_t expires_ms = 0;
    size_t waiting = 0;         // legs still parked
    std::vector<uint64_t> ids;  // every leg's connection id
    std::vector<tcp_pcb*> pcbs;  // every leg's pcb (only compared while the guard holds it)
  };

  // Why a decoded leg cannot be imported here (reason "" when it can), and the counter
  // that counts it besides imports_refused (none: nullptr).
  struct LegRefusal {
    std::string reason;
    uint64_t ImportCounters::*counter = nullptr;
  };
  LegRefusal check_leg(const wire::ConnectionSnapshot& snapshot, const std::vector<FlowKey>& earlier_flows,
                       const std::vector<uint64_t>& earlier_ids) const;
  bool live_here(uint64_t id) const;
  void forget_parked_import(std::unordered_map<MovableSession*, ParkedImport>::iterator it);
  tcp_pcb* rebind_parked(const FlowKey& parked, const IpAddress& client, uint16_t port);
  tcp_pcb* rebind_live(const FlowKey& flow, const IpAddress& peer, uint16_t port);
  // Points a live connection at its peer's new endpoint and restarts it (deferred).
  bool point_at(tcp_pcb* pcb, uint64_t id, const IpAddress& peer, uint16_t port);
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
  ArrivedFn on_imported_;
  TellOriginFn tell_origin_;
  // Sessions with parked legs. Erased when every leg's peer arrived.
  std::unordered_map<MovableSession*, ParkedImport> parked_;
  // Connection ids of parked legs (a replayed or duplicate session is refused by them).
  std::unordered_set<uint64_t> parked_ids_;
  // Live connections armed by expect_peer_move, by their flow before the move.
  std::unordered_map<FlowKey, uint64_t, FlowKeyHash> peer_moving_;
  uint64_t next_expiry_ms_ = UINT64_MAX;
  ImportCounters counters_;
  bool shut_down_ = false;
};

}  // namespace roam::migrate
