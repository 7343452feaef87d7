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

Result<IpAddress, std::string> Importer::import_session(std::span<const uint8_t> payload_bytes, uint64_t now_ms) {
  auto refuse = [&](std::string reason) -> Result<IpAddress, std::string> {
    ++counters_.imports_refused;
    logger("migrate")->info("refused an incoming session: {}", reason);
    return unexpected(std::move(reason));
  };
  if (shut_down_) return refuse("shutting down");
  auto payload = decode_session_payload(payload_bytes);
  if (!payload) return refuse("malformed session frame");
  auto snapshot = wire::decode_snapshot(payload->snapshot);
  if (!snapshot) return refuse(std::string("bad snapshot: ") + wire::snapshot_error_name(snapshot.error()));
  if (!table_.kinds().knows(payload->kind)) return refuse("unknown session kind '" + payload->kind + "'");
  // A protected connection must stay protected: the client keeps signing and would drop
  // this host's unsigned segments.
  if (snapshot->segment_mac && segment_mac_ == nullptr)
    return refuse("the connection uses the segment MAC and this server does not (--segment-mac)");
  const IpAddress& local = own_address(snapshot->remote_address.version);
  if (local.version != snapshot->remote_address.version) return refuse("no address of the client's family here");
  auto pcb = import_pcb(*snapshot, local);
  if (!pcb) return refuse(pcb.error());
  uint64_t id = snapshot->connection_id;
  // Parked first: nothing the new session sends while it starts may leave before the
  // client is on the new path (the client would answer it with RST).
  FlowKey key = flow_of(*pcb);
  if (snapshot->segment_mac) segment_mac_->adopt(*pcb, *snapshot->segment_mac);
  // The session is known only once built; the unpark callback may not run before that.
  auto arrived = std::make_shared<MovableSession*>(nullptr);
  guard_.park(key, *pcb, [this, arrived, id] {
    if (*arrived != nullptr) parked_.erase(*arrived);
    if (!shut_down_ && on_arrived_) on_arrived_(id);
  });
  std::string error;
  auto session = table_.kinds().make(payload->kind, *pcb, std::move(snapshot->received), snapshot->app_state,
                                     table_.finished_callback(), error);
  if (!session) {
    guard_.forget_parked(key);
    if (segment_mac_ != nullptr) segment_mac_->forget(key);
    discard_imported_pcb(*pcb);
    return refuse(error);
  }
  MovableSession* raw = session.get();
  *arrived = raw;
  uint64_t expires = now_ms + config_.parked_timeout_ms;
  parked_[raw] = expires;
  next_expiry_ms_ = std::min(next_expiry_ms_, expires);
  if (payload->handover_token && id != 0) responder_.expect(id, *payload->handover_token, key, snapshot->send.snd_nxt);
  table_.adopt(std::move(session));
  ++counters_.sessions_imported;
  return local;
}

tcp_pcb* Importer::rebind_parked(const FlowKey& parked, const IpAddress& client, uint16_t port) {
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
    tcp_pcb* pcb = alive.count(session) != 0 ? session->pcb() : nullptr;
    if (pcb == nullptr || !guard_.is_parked(flow_of(pcb))) {  // ended, or the client arrived
      it = parked_.erase(it);
      continue;
    }
    if (now_ms < it->second) {
      next_expiry_ms_ = std::min(next_expiry_ms_, it->second);
      ++it;
      continue;
    }
    // The client never came: drop the connection here without a packet (it may live on
    // at the old server, which resumed it).
    ++counters_.parked_expired;
    logger("migrate")->info("{}: the client never arrived; dropping the imported session", flow_of(pcb).to_string());
    guard_.forget_parked(flow_of(pcb));
    if (segment_mac_ != nullptr) segment_mac_->forget(flow_of(pcb));
    responder_.forget(connection_id(pcb));
    session->freeze();
    if (tcp_pcb* released = session->release_pcb()) discard_imported_pcb(released);
    table_.drop(session);
    it = parked_.erase(it);
  }
  return std::min(next_expiry_ms_, housekeeping);
}

void Importer::shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  parked_.clear();
  guard_.unpark_all();
}

}  // namespace roam::migrate
