#include "stack/migrate/importer.hpp"

#include <algorithm>
#include <memory>
#include <unordered_set>

#include "base/log.hpp"
#include "stack/connection_id.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/migrate/control_frame.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/wire/connection_snapshot.hpp"

namespace roam::migrate {

namespace {
// How often on_time wants to run while something may expire (the responder's handovers
// and parked imports expire in tens of seconds: a second is precise enough).
constexpr uint64_t housekeeping_ms = 1000;
}  // namespace

Importer::Importer(Node& node, SessionTable& table, ImportConfig config, SegmentMacGuard* segment_mac)
    : node_(node),
      table_(table),
      config_(std::move(config)),
      segment_mac_(segment_mac),
      responder_(node, config_.handover,
                 [this](const FlowKey& parked, const IpAddress& client, uint16_t port) {
                   return rebind_parked(parked, client, port);
                 }),
      guard_(node) {}

const IpAddress& Importer::own_address(uint8_t version) const {
  if (version == 6 && config_.address6) return *config_.address6;
  return config_.address4;
}

bool Importer::live_here(uint64_t id) const {
  // Registered here with that id. The address test only matters where one process holds
  // both ends of a connection (a test lab): the peer's end is not "here".
  for (tcp_pcb* pcb : find_pcbs_by_connection_id(id)) {
    IpAddress local = flow_of(pcb).local;
    if (local == config_.address4 || (config_.address6 && local == *config_.address6)) return true;
  }
  return false;
}

Importer::LegRefusal Importer::check_leg(const wire::ConnectionSnapshot& snapshot,
                                         const std::vector<FlowKey>& earlier_flows,
                                         const std::vector<uint64_t>& earlier_ids) const {
  uint64_t id = snapshot.connection_id;
  // Without an id the connection cannot be named: not by its client's registration, not
  // by an ACM, not by a later check like this one.
  if (id == 0) return {"connection id 0 (none)", &ImportCounters::refused_no_id};
  if (std::find(earlier_ids.begin(), earlier_ids.end(), id) != earlier_ids.end())
    return {"two legs with one connection id", &ImportCounters::refused_duplicate};
  // A replayed frame, or a copy of a session that already lives here.
  if (parked_ids_.count(id) != 0)
    return {"connection " + std::to_string(id) + " is already parked here", &ImportCounters::refused_duplicate};
  if (live_here(id))
    return {"connection " + std::to_string(id) + " is already live here", &ImportCounters::refused_duplicate};
  // A protected connection must stay protected: the client keeps signing and would drop
  // this host's unsigned segments.
  if (snapshot.segment_mac && segment_mac_ == nullptr)
    return {"the connection uses the segment MAC and this server does not (--segment-mac)"};
  const IpAddress& local = own_address(snapshot.remote_address.version);
  if (local.version != snapshot.remote_address.version) return {"no address of the peer's family here"};
  // Two pcbs on one 4-tuple: lwIP would feed the older one, the import would never be
  // reached, and its parking would hide the live one's packets.
  FlowKey flow{local, snapshot.remote_address, snapshot.local_port, snapshot.remote_port};
  if (std::find(earlier_flows.begin(), earlier_flows.end(), flow) != earlier_flows.end() ||
      guard_.is_parked(flow) || find_active_pcb(flow) != nullptr)
    return {"its flow " + flow.to_string() + " is taken here", &ImportCounters::refused_flow_collision};
  return {};
}

Result<IpAddress, std::string> Importer::import_session(std::span<const uint8_t> payload_bytes, uint64_t now_ms,
                                                        PrecopyStore* precopied) {
  auto refuse = [&](std::string reason, uint64_t ImportCounters::*counter = nullptr) -> Result<IpAddress, std::string> {
    ++counters_.imports_refused;
    if (counter != nullptr) ++(counters_.*counter);
    logger("migrate")->info("refused an incoming session: {}", reason);
    return unexpected(std::move(reason));
  };
  if (shut_down_) return refuse("shutting down");
  auto payload = decode_session_payload(payload_bytes);
  if (!payload) return refuse(std::string("malformed session frame: ") + session_payload_error_name(payload.error()));
  if (!table_.kinds().knows(payload->kind)) return refuse("unknown session kind '" + payload->kind + "'");

  // Every leg is decoded and checked before anything is created.
  const size_t count = payload->legs.size();
  auto leg_name = [&](size_t i) {
    return count == 1 ? std::string() : "leg " + std::to_string(i) + " (" + leg_role_name(payload->legs[i].role) + "): ";
  };
  std::vector<wire::ConnectionSnapshot> snapshots;
  std::vector<FlowKey> flows;  // as they will be here
  std::vector<uint64_t> ids;
  snapshots.reserve(count);
  // Whatever happens to the session, its legs' pre-copied bytes are of no more use after
  // this frame (a refused move resumes on the old host, which pre-copies again next time).
  struct DiscardPrecopied {
    PrecopyStore* store;
    std::vector<uint64_t> ids;
    uint64_t spliced = 0;  // taken out and spliced: lost too unless the session is imported
    bool imported = false;
    ~DiscardPrecopied() {
      if (store == nullptr) return;
      for (uint64_t id : ids) store->discard(id);
      if (!imported) store->note_discarded(spliced);
    }
  } discard_precopied{precopied, {}};
  for (size_t i = 0; i < count; ++i) {
    auto snapshot = wire::decode_snapshot(payload->legs[i].snapshot);
    if (!snapshot)
      return refuse(leg_name(i) + "bad snapshot: " + wire::snapshot_error_name(snapshot.error()));
    discard_precopied.ids.push_back(snapshot->connection_id);
    if (snapshot->precopied) {
      // A delta: splice in the bytes its sender pre-copied, if they are exactly the ones it
      // relies on; otherwise the move fails and the connection stays where it is.
      std::optional<PrecopiedBytes> send;
      std::optional<PrecopiedBytes> receive;
      if (precopied != nullptr && snapshot->connection_id != 0) {
        send = precopied->take_out(snapshot->connection_id, PrecopyStreamKind::send);
        receive = precopied->take_out(snapshot->connection_id, PrecopyStreamKind::receive);
      }
      uint64_t relied = static_cast<uint64_t>(snapshot->precopied->send_length) + snapshot->precopied->receive_length;
      auto spliced = splice_precopied(*snapshot, send, receive);
      if (!spliced) {
        if (precopied != nullptr)
          precopied->note_discarded((send ? send->bytes.size() : 0) + (receive ? receive->bytes.size() : 0));
        return refuse(leg_name(i) + spliced.error(), &ImportCounters::refused_precopy_mismatch);
      }
      discard_precopied.spliced += relied;
      if (auto valid = wire::validate_snapshot(*snapshot); !valid)
        return refuse(leg_name(i) + "bad snapshot after splicing: " + wire::snapshot_error_name(valid.error()));
    }
    if (auto refusal = check_leg(*snapshot, flows, ids); !refusal.reason.empty())
      return refuse(leg_name(i) + refusal.reason, refusal.counter);
    const IpAddress& local = own_address(snapshot->remote_address.version);
    flows.push_back({local, snapshot->remote_address, snapshot->local_port, snapshot->remote_port});
    ids.push_back(snapshot->connection_id);
    snapshots.push_back(std::move(*snapshot));
  }

  // Import every leg, or none: a leg that cannot be built undoes the others.
  std::vector<tcp_pcb*> pcbs;
  pcbs.reserve(count);
  auto undo = [&] {
    for (size_t i = 0; i < pcbs.size(); ++i) {
      guard_.forget_parked(flows[i]);
      if (segment_mac_ != nullptr) segment_mac_->forget(flows[i]);
      discard_imported_pcb(pcbs[i]);
    }
  };
  for (size_t i = 0; i < count; ++i) {
    auto pcb = import_pcb(snapshots[i], flows[i].local);
    if (!pcb) {
      undo();
      return refuse(leg_name(i) + pcb.error());
    }
    pcbs.push_back(*pcb);
  }
  // Parked first: nothing the new session sends while it starts may leave before each
  // peer is on the new path (a client would answer it with RST; so would an origin).
  // The session is known only once built; an unpark callback may not run before that.
  auto arrived = std::make_shared<MovableSession*>(nullptr);
  for (size_t i = 0; i < count; ++i) {
    if (snapshots[i].segment_mac) segment_mac_->adopt(pcbs[i], *snapshots[i].segment_mac);
    uint64_t id = ids[i];
    guard_.park(flows[i], pcbs[i], [this, arrived, id] {
      parked_ids_.erase(id);
      if (*arrived != nullptr) {
        auto it = parked_.find(*arrived);
        if (it != parked_.end() && --it->second.waiting == 0) parked_.erase(it);
      }
      if (!shut_down_ && on_arrived_) on_arrived_(id);
    });
  }
  std::vector<ImportedLeg> legs(count);
  for (size_t i = 0; i < count; ++i)
    legs[i] = ImportedLeg{pcbs[i], payload->legs[i].role, std::move(snapshots[i].received), snapshots[i].app_state};
  std::string error;
  auto session = table_.kinds().make(payload->kind, std::move(legs), table_.finished_callback(), error);
  if (!session) {
    undo();
    return refuse(error);
  }
  MovableSession* raw = session.get();
  *arrived = raw;
  uint64_t expires = now_ms + config_.parked_timeout_ms;
  parked_[raw] = ParkedImport{expires, count, ids, pcbs};
  parked_ids_.insert(ids.begin(), ids.end());
  next_expiry_ms_ = std::min(next_expiry_ms_, expires);
  const IpAddress* given = nullptr;
  for (size_t i = 0; i < count; ++i) {
    if (payload->legs[i].role == LegRole::client) {
      if (given == nullptr) given = &flows[i].local;
      if (payload->legs[i].handover_token)
        responder_.expect(ids[i], *payload->legs[i].handover_token, flows[i], snapshots[i].send.snd_nxt);
    }
  }
  IpAddress result = given != nullptr ? *given : flows.front().local;
  table_.adopt(std::move(session));
  if (on_imported_)
    for (uint64_t id : ids) on_imported_(id);
  ++counters_.sessions_imported;
  counters_.legs_imported += count;
  counters_.precopy_bytes_used += discard_precopied.spliced;
  discard_precopied.imported = true;
  // The origins last: the session is whole here before any origin is sent this way.
  for (size_t i = 0; i < count; ++i) {
    if (payload->legs[i].role != LegRole::origin) continue;
    OriginLegMoved moved{ids[i], pcbs[i],
                         FlowKey{snapshots[i].local_address, snapshots[i].remote_address, snapshots[i].local_port,
                                 snapshots[i].remote_port},
                         flows[i]};
    if (tell_origin_) {
      tell_origin_(moved);
    } else {
      // Only a host that serves proxy sessions sets the hook (roam-server proxy mode):
      // elsewhere nothing can tell the origin, and the leg expires parked.
      ++counters_.origin_legs_untold;
      logger("migrate")->warn("{}: origin leg imported as {} but nothing tells its origin", moved.old_flow.to_string(),
                              moved.new_flow.to_string());
    }
  }
  return result;
}

void Importer::forget_parked_import(std::unordered_map<MovableSession*, ParkedImport>::iterator it) {
  for (uint64_t id : it->second.ids) parked_ids_.erase(id);
  parked_.erase(it);
}

bool Importer::expect_peer_move(tcp_pcb* pcb, uint64_t connection_id, const crypto::HandoverToken& token,
                                uint64_t now_ms) {
  if (!config_.handover || pcb == nullptr) return false;
  FlowKey flow = flow_of(pcb);
  // A connection whose peer moved once already may be armed under its older flow: that
  // arming is void (the responder keeps one per id).
  peer_moving_[flow] = connection_id;
  responder_.expect(connection_id, token, flow, pcb->snd_nxt, now_ms);
  ++counters_.peer_moves_expected;
  return true;
}

// The responder found a valid SYN for a live connection whose peer moved: point it at
// the peer's new place (as its NAT presents it) and, once the SYN-ACK is out (deferred:
// the responder sends it after this returns), retransmit everything unacknowledged so
// the peer hears from us at once (a parked import on its side unparks on it).
tcp_pcb* Importer::rebind_live(const FlowKey& flow, const IpAddress& peer, uint16_t port) {
  auto armed = peer_moving_.find(flow);
  if (armed == peer_moving_.end()) return nullptr;
  uint64_t id = armed->second;
  peer_moving_.erase(armed);
  tcp_pcb* pcb = find_connection_pcb(flow, id);
  if (pcb == nullptr) return nullptr;
  return point_at(pcb, id, peer, port) ? pcb : nullptr;
}

bool Importer::peer_moved_to(tcp_pcb* pcb, uint64_t connection_id, const IpAddress& peer) {
  if (pcb == nullptr) return false;
  responder_.forget(connection_id);  // an earlier handover armed for it is void now
  peer_moving_.erase(flow_of(pcb));
  return point_at(pcb, connection_id, peer, pcb->remote_port);
}

bool Importer::point_at(tcp_pcb* pcb, uint64_t id, const IpAddress& peer, uint16_t port) {
  FlowKey flow = flow_of(pcb);
  FlowKey moved = flow;
  moved.remote = peer;
  moved.remote_port = port;
  if (!(moved == flow)) {
    if (find_active_pcb(moved) != nullptr) return false;  // that 4-tuple is taken here
    set_remote_endpoint(pcb, peer, port);
    if (segment_mac_ != nullptr) segment_mac_->rebind(flow, moved);
  }
  ++counters_.peer_moves_rebound;
  logger("migrate")->info("{}: the peer moved; now {}", flow.to_string(), endpoint_string(peer, port));
  node_.defer([moved, id] {
    if (tcp_pcb* live = find_connection_pcb(moved, id)) restart_transmission(live);
  });
  node_.kick();
  return true;
}

tcp_pcb* Importer::rebind_parked(const FlowKey& parked, const IpAddress& client, uint16_t port) {
  if (!guard_.is_parked(parked)) return rebind_live(parked, client, port);
  FlowKey moved = parked;
  moved.remote = client;
  moved.remote_port = port;
  tcp_pcb* pcb = guard_.repark(parked, moved);
  if (pcb != nullptr && segment_mac_ != nullptr && !(moved == parked)) segment_mac_->rebind(parked, moved);
  if (pcb != nullptr && !(moved == parked))
    logger("migrate")->debug("{}: the client's NAT presents it as {}", parked.to_string(),
                             endpoint_string(client, port));
  return pcb;
}

uint64_t Importer::on_time(uint64_t now_ms) {
  // The guard and the responder are fed the time here (and with each packet). A flow the
  // Exporter silenced, or a handover expected, without a time is stamped now: this runs
  // at least every housekeeping_ms.
  uint64_t machines = std::min(responder_.on_time(now_ms), guard_.on_time(now_ms));
  uint64_t housekeeping = std::min(machines, now_ms + housekeeping_ms);
  if (now_ms < next_expiry_ms_) return std::min(next_expiry_ms_, housekeeping);
  // Something expired: only now is the table walked (a parked session may have ended on
  // its own meanwhile, and then its pointer must not be touched).
  auto live = table_.sessions();
  std::unordered_set<MovableSession*> alive(live.begin(), live.end());
  next_expiry_ms_ = UINT64_MAX;
  for (auto it = parked_.begin(); it != parked_.end();) {
    MovableSession* session = it->first;
    std::vector<SessionLeg> legs = alive.count(session) != 0 ? session->legs() : std::vector<SessionLeg>{};
    size_t parked = 0;
    for (const auto& leg : legs)
      if (leg.pcb != nullptr && guard_.is_parked(flow_of(leg.pcb))) ++parked;
    if (parked == 0) {  // ended, or every peer arrived
      if (alive.count(session) == 0) {
        // It ended with legs still parked (a proxy whose client left before its origin
        // was told): those pcbs were left to the guard; free them here.
        for (tcp_pcb* pcb : it->second.pcbs) {
          if (!guard_.holds(pcb)) continue;
          FlowKey flow = flow_of(pcb);
          guard_.forget_parked(flow);
          if (segment_mac_ != nullptr) segment_mac_->forget(flow);
          responder_.forget(connection_id(pcb));
          discard_imported_pcb(pcb);
        }
      }
      auto gone = it++;
      forget_parked_import(gone);
      continue;
    }
    if (now_ms < it->second.expires_ms) {
      next_expiry_ms_ = std::min(next_expiry_ms_, it->second.expires_ms);
      ++it;
      continue;
    }
    ++counters_.parked_expired;
    auto gone = it++;
    forget_parked_import(gone);
    if (parked == legs.size()) {
      // No peer ever came: drop the connections here without a packet (they may live on
      // at the old server, which resumed them).
      logger("migrate")->info("{}: the peer never arrived; dropping the imported session",
                              flow_of(legs.front().pcb).to_string());
      for (const auto& leg : legs) {
        FlowKey flow = flow_of(leg.pcb);
        guard_.forget_parked(flow);
        if (segment_mac_ != nullptr) segment_mac_->forget(flow);
        responder_.forget(connection_id(leg.pcb));
      }
      session->freeze();
      for (tcp_pcb* released : session->release_legs())
        if (released != nullptr) discard_imported_pcb(released);
      table_.drop(session);
      continue;
    }
    // Some legs arrived and some never will: the session cannot go on (a proxy without its
    // origin). The parked legs join lwIP as they are and the app closes every leg.
    logger("migrate")->info("{}: a leg's peer never arrived; closing the imported session",
                            flow_of(legs.front().pcb).to_string());
    for (const auto& leg : legs) {
      if (leg.pcb == nullptr) continue;
      FlowKey flow = flow_of(leg.pcb);
      if (!guard_.is_parked(flow)) continue;
      guard_.forget_parked(flow);
      responder_.forget(connection_id(leg.pcb));
      register_imported_pcb(leg.pcb);
    }
    session->close();
  }
  return std::min(next_expiry_ms_, housekeeping);
}

void Importer::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  parked_.clear();
  parked_ids_.clear();
  guard_.unpark_all();
}

}  // namespace roam::migrate
