// ControlPool: the old server's established, authenticated control connections to move
// targets, kept open between moves (docs/PROTOCOL.md 4.6 "Reused control connections").
// Opening one costs a TCP handshake, a Noise XX handshake and the target's pool proof
// (~2.5 ms of a quiet move's 6.9 on one host); a move that finds one here writes its
// address_request at once.
//
// At most one connection per target, at most max_targets targets. Filled by a move that
// ended with every answer in (MigrationService hands its connection back), and, for the
// targets named in advance (want(): the roam pool file's members), opened here with a
// reconnect backoff. An idle connection is pinged (an address_request: any target answers
// one, and it changes nothing there) once idle for ping_after_ms; no answer within
// ping_timeout_ms, a closed connection, or any other frame drops it (counted stale when
// it was ready). A move takes a connection out (take) and owns it until it gives it back.
// Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "stack/migrate/frame_stream.hpp"
#include "stack/node.hpp"

namespace roam::migrate {

struct ControlPoolLimits {
  size_t max_targets = 16;
  uint64_t ping_after_ms = 15'000;   // idle this long: ping
  uint64_t ping_timeout_ms = 5'000;  // a ping unanswered this long: the connection is dead
  // A move on a kept connection whose address_request is unanswered this long (checked
  // each second) treats it as stale and retries on a new one, its sessions resumed
  // meanwhile (MigrationService).
  uint64_t answer_timeout_ms = 2'000;
};

// Pure: what an idle ready connection needs at `now_ms`, heard from last at
// `last_heard_ms`, with a ping outstanding since `ping_sent_ms` (nullopt: none).
enum class IdleAction : uint8_t { none, ping, drop };
IdleAction idle_action(uint64_t now_ms, uint64_t last_heard_ms, std::optional<uint64_t> ping_sent_ms,
                       const ControlPoolLimits& limits);

// Pure: how long a target opened in advance waits before its next attempt after
// `failures` failed ones in a row: 0 for the first, then 1 s doubling up to 60 s.
uint64_t reconnect_delay_ms(unsigned failures);

struct ControlPoolCounters {
  uint64_t reused = 0;    // moves that wrote their address_request on a cached connection
  uint64_t opened = 0;    // new control connections to a target (moves and opened in advance)
  uint64_t stale = 0;     // cached connections found dead: closed by the peer, a ping unanswered,
                          // a stray frame, or failed on a move's first use (that move retried)
  uint64_t pings = 0;     // keepalive pings sent
  uint64_t not_kept = 0;  // connections a move handed back that were not kept (cap, closed)
};

class ControlPool {
 public:
  // Opens a secured, authenticated connection to `target` whose frames and end go to the
  // given callbacks and that calls `connected` once the target proved its membership
  // (MigrationService: TCP connect, Noise XX, pool certificate). nullptr: cannot start.
  using OpenFn = std::function<std::unique_ptr<FrameStream>(const std::string& target, FrameStream::FrameFn,
                                                            FrameStream::ClosedFn, FrameStream::ConnectedFn)>;

  ControlPool(Node& node, ControlPoolLimits limits, OpenFn open);
  ~ControlPool();
  ControlPool(const ControlPool&) = delete;
  ControlPool& operator=(const ControlPool&) = delete;

  // Targets to keep a connection to even before any move (at most max_targets).
  void want(const std::string& target);
  // A ready connection to `target`, out of the cache (counted reused), or nullptr.
  std::unique_ptr<FrameStream> take(const std::string& target);
  // A move's connection after every answer came: kept (replacing another to the target)
  // when it is still open and there is room. Not from inside one of its own callbacks.
  bool put(const std::string& target, std::unique_ptr<FrameStream> stream);
  // Pings, drops, reconnects. Call every second or so.
  void on_time(uint64_t now_ms);
  void note_opened() { ++counters_.opened; }
  void note_stale() { ++counters_.stale; }
  size_t ready_count() const;
  const ControlPoolCounters& counters() const { return counters_; }
  // Closes everything; nothing is opened afterwards.
  void clear();

 private:
  struct Entry {
    std::unique_ptr<FrameStream> stream;
    bool ready = false;  // authenticated and idle (false: opening)
    uint64_t last_heard_ms = 0;
    std::optional<uint64_t> ping_sent_ms;
  };
  struct Wanted {
    unsigned failures = 0;
    uint64_t next_attempt_ms = 0;
  };
  void adopt(const std::string& target, Entry& entry);
  void on_frame(const std::string& target, FrameStream& stream, const Frame& frame);
  void on_closed(const std::string& target, FrameStream& stream);
  void drop(const std::string& target, bool stale);
  void open(const std::string& target, uint64_t now_ms);
  uint64_t now() const;

  Node& node_;
  ControlPoolLimits limits_;
  OpenFn open_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, Wanted> wanted_;
  ControlPoolCounters counters_;
  bool cleared_ = false;
};

}  // namespace roam::migrate
