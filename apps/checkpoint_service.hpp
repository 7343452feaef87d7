// roam-server --checkpoint-seed: client-held checkpoints of files sessions (PROTOCOL.md 14).
// Every interval it seals a state-only checkpoint of each files session that is sending
// and whose client registered the connection on a control channel, and sends it to that
// client (CHECKPOINT). A RESUME on a channel (a client whose server died) is opened,
// checked against the ledger, aligned to the client's sequence view, rebased in the file,
// and imported through the migration service like a transferred session; the answer is a
// RESUMED, which carries a fresh NAT handover token when this server runs the handover
// (the import expects the client's synthetic SYN with it, as for a transfer). Refusals
// are counted by reason (group `checkpoint` of `roamctl status`) and change nothing.
// Owned by the server; the node's loop thread.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>

#include "base/counters.hpp"
#include "base/uv_handle.hpp"
#include "crypto/handover_mac.hpp"
#include "stack/control/channel_server.hpp"
#include "stack/migrate/checkpoint.hpp"
#include "stack/migrate/migration_service.hpp"
#include "stack/migrate/session_table.hpp"
#include "stack/node.hpp"

namespace roam {

struct CheckpointServiceCounters {
  uint64_t pushed = 0;        // CHECKPOINT messages sent
  uint64_t push_skipped = 0;  // a session that could not be captured or sealed this round
  uint64_t resumes = 0;       // RESUME messages received
  uint64_t resumed = 0;       // ...that rebuilt a connection here
  uint64_t resume_live = 0;   // ...refused: the connection is open here
  uint64_t resume_unbuildable = 0;  // ...refused: alignment, app state or import failed
};

class CheckpointService {
 public:
  // `seed_path`: a 32-byte secret file every server of the pool shares (PROTOCOL.md 14.1). Throws
  // ConfigError when it cannot be read. interval_ms 0: no pushes (RESUMEs still answered).
  CheckpointService(Node& node, SessionTable& table, MigrationService& migration, const std::string& seed_path,
                    uint64_t interval_ms);
  ~CheckpointService();
  CheckpointService(const CheckpointService&) = delete;
  CheckpointService& operator=(const CheckpointService&) = delete;

  void close();
  // Told, after each connection rebuilt here, the address of the server that sealed its
  // checkpoint (the one its client left: RoamPoolService::resumed_away_from).
  void set_on_resumed(std::function<void(const IpAddress& left)> on_resumed) { on_resumed_ = std::move(on_resumed); }
  // One round of pushes (the timer's job; public for tests).
  void push_all();

 private:
  void on_resume(ChannelConnection& channel, const control::ResumeRequest& request);
  void answer(ChannelConnection& channel, uint64_t id, uint64_t generation, uint8_t reason,
              const std::optional<crypto::HandoverToken>& token = std::nullopt);

  Node& node_;
  SessionTable& table_;
  std::function<void(const IpAddress&)> on_resumed_;
  MigrationService& migration_;
  migrate::CheckpointKey key_;
  // Connection id -> last generation sealed here (a resumed one goes on from its checkpoint's).
  std::unordered_map<uint64_t, uint64_t> generations_;
  migrate::CheckpointLedger ledger_;
  migrate::CheckpointCounters checkpoint_counters_;
  CheckpointServiceCounters counters_;
  UvHandle<uv_timer_t> timer_;
};

}  // namespace roam
