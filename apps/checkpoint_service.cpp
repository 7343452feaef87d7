#include "apps/checkpoint_service.hpp"

#include <algorithm>
#include <cstring>
#include <optional>

#include "apps/files_state.hpp"
#include "apps/proxy_resume_state.hpp"
#include "base/clock.hpp"
#include "base/config_error.hpp"
#include "base/log.hpp"
#include "crypto/identity_key.hpp"
#include "stack/connection_id.hpp"
#include "stack/migrate/control_frame.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "stack/migrate/resume_alignment.hpp"

namespace roam {

namespace {

migrate::CheckpointKey load_key(const std::string& seed_path) {
  auto seed = crypto::load_secret_file(seed_path);
  if (!seed) throw ConfigError("--checkpoint-seed '" + seed_path + "': " + crypto::key_error_name(seed.error()));
  crypto::ChainKey top;
  std::memcpy(top.data(), seed->data(), top.size());
  auto key = migrate::CheckpointKey::derive(top);
  sodium_memzero(top.data(), top.size());
  return key;
}

// The reason byte of RESUMED for a checkpoint's own fault (PROTOCOL.md 14.3).
uint8_t reason_of(migrate::CheckpointError error) { return static_cast<uint8_t>(static_cast<uint8_t>(error) + 1); }

}  // namespace

CheckpointService::CheckpointService(Node& node, SessionTable& table, MigrationService& migration,
                                     const std::string& seed_path, uint64_t interval_ms)
    : node_(node), table_(table), migration_(migration), key_(load_key(seed_path)) {
  auto& r = migration_.registry();
  r.add("checkpoint", "checkpoints_pushed", &counters_.pushed);
  r.add("checkpoint", "checkpoints_skipped", &counters_.push_skipped);
  r.add("checkpoint", "resumes", &counters_.resumes);
  r.add("checkpoint", "resumes_done", &counters_.resumed);
  r.add("checkpoint", "resume_refused_live", &counters_.resume_live);
  r.add("checkpoint", "resume_refused_unbuildable", &counters_.resume_unbuildable);
  for (size_t i = 0; i < migrate::checkpoint_error_count; ++i)
    r.add("checkpoint", std::string("resume_refused_") + migrate::checkpoint_error_name(static_cast<migrate::CheckpointError>(i)),
          &checkpoint_counters_.refused[i]);
  migration_.channels().set_on_resume(
      [this](ChannelConnection& channel, const control::ResumeRequest& request) { on_resume(channel, request); });
  if (interval_ms != 0) start_repeating_timer<&CheckpointService::push_all>(timer_, node_.loop(), this, interval_ms, false);
}

CheckpointService::~CheckpointService() { close(); }

void CheckpointService::close() {
  if (timer_.valid()) timer_.close();
  migration_.channels().set_on_resume(nullptr);
}

void CheckpointService::push_all() {
  const uint64_t now = unix_ms();
  for (MovableSession* session : table_.sessions()) {
    auto source = session->checkpoint_source();
    if (!source || source->pcb == nullptr) continue;
    tcp_pcb* pcb = source->pcb;
    const uint64_t id = connection_id(pcb);
    if (id == 0) continue;
    ChannelConnection* channel = migration_.channels().channel_for(id);
    if (channel == nullptr || !channel->established()) continue;
    // A live pcb, read between its callbacks: the queues are copied and dropped (a
    // checkpoint holds none; the app regenerates them from its state).
    auto captured = migrate::capture_snapshot(pcb, {}, source->app_state);
    if (!captured) {
      ++counters_.push_skipped;
      continue;
    }
    migrate::Checkpoint checkpoint;
    checkpoint.snapshot = std::move(*captured);
    checkpoint.snapshot.unacked.clear();
    checkpoint.snapshot.unsent.clear();
    checkpoint.snapshot.received.clear();
    // The sequence number of the app's next output byte: state_.offset's byte.
    checkpoint.snapshot.send.snd_una = checkpoint.snapshot.send.snd_nxt = pcb->snd_lbb;
    checkpoint.header.connection_id = id;
    std::memcpy(checkpoint.header.client_key.data(), channel->channel().remote_static().data(),
                checkpoint.header.client_key.size());
    checkpoint.snapshot.owner = checkpoint.header.client_key;
    // Generations grow across servers too: a session that moved here live (no generation
    // travels in a transfer) must not restart below its old server's (PROTOCOL.md 14.2).
    uint64_t& generation = generations_[id];
    generation = std::max(generation + 1, now);
    checkpoint.header.generation = generation;
    checkpoint.created_at_ms = now;
    auto sealed = migrate::seal_checkpoint(key_, checkpoint);
    if (!sealed) {
      ++counters_.push_skipped;
      continue;
    }
    if (channel->send(control::CheckpointPush{std::move(*sealed)})) ++counters_.pushed;
  }
  // Forget the generations of connections that ended.
  std::erase_if(generations_, [](const auto& entry) { return find_pcbs_by_connection_id(entry.first).empty(); });
}

void CheckpointService::answer(ChannelConnection& channel, uint64_t id, uint64_t generation, uint8_t reason,
                               const std::optional<crypto::HandoverToken>& token) {
  control::ResumeAnswer a;
  a.connection_id = id;
  a.generation = generation;
  a.status = reason == control::resume_reason_none ? control::ResumeStatus::resumed : control::ResumeStatus::refused;
  a.reason = reason;
  if (a.status == control::ResumeStatus::resumed) a.handover_token = token;
  channel.send(a);
}

void CheckpointService::on_resume(ChannelConnection& channel, const control::ResumeRequest& request) {
  ++counters_.resumes;
  migrate::CheckpointClientKey client;
  std::memcpy(client.data(), channel.channel().remote_static().data(), client.size());
  auto opened = migrate::open_checkpoint(key_, request.sealed, client, request.connection_id,
                                         migrate::OpenLimits{unix_ms(), 0, 60'000});
  if (!opened) {
    checkpoint_counters_.count(opened.error());
    auto header = migrate::peek_checkpoint_header(request.sealed);
    answer(channel, request.connection_id, header ? header->generation : 0, reason_of(opened.error()));
    return;
  }
  const uint64_t generation = opened->header.generation;
  if (auto fresh = ledger_.check(opened->header); !fresh) {
    checkpoint_counters_.count(fresh.error());
    answer(channel, request.connection_id, generation, reason_of(fresh.error()));
    return;
  }
  // Live here: open, or parked after an import or an earlier resume (its client not heard
  // on the new path yet): either way this server holds it (PROTOCOL.md 14.4, 7).
  if (!find_pcbs_by_connection_id(request.connection_id).empty() ||
      migration_.connection_parked(request.connection_id)) {
    ++counters_.resume_live;
    answer(channel, request.connection_id, generation, control::resume_reason_connection_live);
    return;
  }
  auto refuse_unbuildable = [&](const std::string& why) {
    ++counters_.resume_unbuildable;
    logger("checkpoint")->warn("resume of connection {} refused: {}", request.connection_id, why);
    answer(channel, request.connection_id, generation, control::resume_reason_cannot_rebuild);
  };
  const IpAddress sealer = opened->snapshot.local_address;  // the server its client left
  auto aligned = migrate::align_to_client(opened->snapshot,
                                          {request.rcv_nxt, request.snd_una, request.snd_nxt});
  if (!aligned) return refuse_unbuildable(aligned.error());
  std::string kind = "files";
  std::string position;
  if (auto proxy = decode_proxy_resume_state(aligned->snapshot.app_state)) {
    // A proxy session: the relay re-sends from the client's offsets (PROTOCOL.md 14.8.2).
    auto rebased = rebase_proxy_resume_state(*proxy, aligned->send_shift, aligned->receive_shift);
    if (!rebased) return refuse_unbuildable("the proxy's stream offsets cannot move by the client's view");
    aligned->snapshot.app_state = encode_proxy_resume_state(*rebased);
    kind = "proxy";
    position = "relayed connection " + std::to_string(rebased->relayed_id) + ", down offset " +
               std::to_string(rebased->down) + ", up offset " + std::to_string(rebased->up);
  } else {
    auto state = decode_files_state(aligned->snapshot.app_state);
    std::optional<FilesState> rebased;
    if (state) rebased = rebase_files_state(*state, aligned->send_shift);
    if (!rebased) return refuse_unbuildable("the files state cannot move by the client's view");
    aligned->snapshot.app_state = encode_files_state(*rebased);
    position = "file offset " + std::to_string(rebased->offset);
  }
  std::vector<uint8_t> snapshot = wire::encode_snapshot(aligned->snapshot);
  // A fresh token per resume: the client's NAT has never seen the flow to this server, so
  // the connection crosses it only after the synthetic handshake (PROTOCOL.md 6.3). The
  // import expects it like a transferred leg's: s_pos is the rebuilt snd_nxt, which is the
  // client's rcv_nxt (14.5), so the SYN-ACK sits just before the next byte it wants.
  std::optional<crypto::HandoverToken> token;
  if (migration_.handover_enabled()) token = crypto::random_handover_token();
  migrate::SessionPayload payload;
  payload.kind = kind;
  payload.legs.push_back({migrate::LegRole::client, token, snapshot});
  auto imported = migration_.import_resumed(migrate::encode_session_payload(payload));
  wire::wipe_bytes(snapshot.data(), snapshot.size());
  if (!imported) return refuse_unbuildable(imported.error());
  ledger_.record(opened->header);
  generations_[request.connection_id] = generation;
  ++counters_.resumed;
  logger("checkpoint")->info("connection {} resumed from checkpoint generation {} ({})", request.connection_id,
                             generation, position);
  answer(channel, request.connection_id, generation, control::resume_reason_none, token);
  if (on_resumed_) on_resumed_(sealer);
}

}  // namespace roam
