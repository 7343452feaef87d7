// roam-server relay --relay-replay-bytes / --relay-replay-port (PROTOCOL.md 14.8.3-14.8.4):
// the table of relayed connections that keep a replay buffer, by the connection id of the
// carrier that carries each now, and the replay port's listener. A carrier accepted there
// must open with a RELAY_RESUME (29 bytes, within 5 s); the service decides on it
// (apps/relay_replay.hpp), answers RELAY_RESUMED, and on success hands the carrier to the
// relayed connection, which re-sends from the requested offset. Refusals are counted by
// reason (group `relay` of `roamctl status`) and change nothing. Lingering connections
// (carrier lost, waiting for a resume) end after the linger time. Loop thread only; owned
// by the server, outlives no session it lists (sessions remove themselves).
#pragma once

#include <uv.h>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "apps/relay_replay.hpp"
#include "base/counters.hpp"
#include "base/rate_limited_log.hpp"
#include "base/uv_handle.hpp"
#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"
#include "stack/tcp_listener.hpp"

namespace roam {

class RelaySession;

struct RelayReplayOptions {
  size_t replay_bytes = 0;     // 0: off (no buffer, no linger, no replay port)
  uint16_t port = 0;           // the replay port (required with replay_bytes)
  uint64_t linger_ms = 30000;  // a relayed connection without carrier waits this long
};

struct RelayResumeCounters {
  uint64_t requests = 0;   // RELAY_RESUMEs decoded or refused
  uint64_t resumed = 0;
  uint64_t truncated = 0;  // a carrier on the replay port that ended or timed out before 29 bytes
  uint64_t lingered_out = 0;  // relayed connections reset after the linger time
  std::array<uint64_t, relay::max_resume_reason + 1> refused{};  // by reason (index 0 unused)
};

class RelayResumeService {
 public:
  using PoolOf = std::function<std::optional<relay::PoolKey>(const OwnerKey&)>;
  // Throws ConfigError when the replay port cannot be listened on.
  RelayResumeService(Node& node, RelayReplayOptions options, PoolOf pool_of, CounterRegistry& registry);
  ~RelayResumeService();
  RelayResumeService(const RelayResumeService&) = delete;
  RelayResumeService& operator=(const RelayResumeService&) = delete;

  const RelayReplayOptions& options() const { return options_; }
  void close();

  // A relayed connection keeping a buffer names itself by its carrier's id.
  void add(uint64_t id, RelaySession* session);
  void remove(uint64_t id, const RelaySession* session);
  // Loop time (ms) at which a lingering connection ends.
  uint64_t linger_deadline() const { return uv_now(node_.loop()) + options_.linger_ms; }

 private:
  // One carrier accepted on the replay port until its request is decided.
  struct Gate final : TcpConnection::Handler {
    RelayResumeService* service = nullptr;
    std::unique_ptr<TcpConnection> carrier;
    std::vector<uint8_t> bytes;  // what it delivered so far (the request, then early up bytes)
    uint64_t deadline_ms = 0;
    bool done = false;      // decided, refused, timed out or gone: takes nothing more
    bool deciding = false;  // a complete request waits for decide() (deferred)
    bool fin = false;       // the carrier's FIN came while deciding
    void on_data(TcpConnection&, PbufPtr data) override;
    void on_remote_closed(TcpConnection&) override;
    void on_sent(TcpConnection&, size_t) override {}
    void on_error(TcpConnection&, err_t) override;
  };

  bool accept(tcp_pcb* pcb);
  void decide(Gate& gate);
  void refuse(Gate& gate, relay::ResumeReason reason);
  void finish(Gate& gate);  // the gate is removed once out of its callbacks
  void sweep();

  Node& node_;
  RelayReplayOptions options_;
  PoolOf pool_of_;
  std::unique_ptr<TcpListener> listener_;
  std::unordered_map<uint64_t, RelaySession*> relayed_;
  std::unordered_map<Gate*, std::unique_ptr<Gate>> gates_;
  RelayResumeCounters counters_;
  RateLimitedLog refusal_log_;  // anyone who reaches the replay port can repeat refusals
  UvHandle<uv_timer_t> sweep_timer_;
};

}  // namespace roam
