// MoveFollower: the client's side of a server move. Listens for MoveNotices on the carrier
// link (lwIP UDP), rewrites every connection to the old server endpoint so it goes to the
// new one (migrate::rewrite_remote), restarts transmission at once, silences the old
// flows (late packets from the old server must not be answered with RST), and
// acknowledges. Owned by roam-client; loop thread only.
//
// UNAUTHENTICATED stepping stone (see stack/migrate/move_notice.hpp): any host that can
// reach the client's link can redirect it. Disable with --no-follow where that matters;
// the control-channel issue replaces it with authenticated Address Change Messages.
#pragma once

#include <cstdint>
#include <vector>

#include "stack/lwip.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/migrate/move_notice.hpp"
#include "stack/node.hpp"
#include "tun/uv_handle.hpp"

struct udp_pcb;

namespace roam {

struct MoveFollowerCounters {
  uint64_t notices = 0;  // well-formed notices received
  uint64_t connections_moved = 0;
  uint64_t pokes = 0;        // repeated ACKs toward a new server not yet heard from
  uint64_t unanswered = 0;   // moved connections the new server never answered
  uint64_t bad_notices = 0;  // malformed, wrong kind, family mismatch: dropped
};

class MoveFollower {
 public:
  MoveFollower(Node& node, uint16_t port);  // throws ConfigError
  ~MoveFollower();
  MoveFollower(const MoveFollower&) = delete;
  MoveFollower& operator=(const MoveFollower&) = delete;

  void close();
  const MoveFollowerCounters& counters() const { return counters_; }

 private:
  static void on_udp_recv(void* arg, udp_pcb* pcb, pbuf* p, const ip_addr_t* addr, u16_t port) noexcept;
  void on_notice(const migrate::MoveNotice& notice, const ip_addr_t& from, u16_t from_port);
  void poke_new_paths();

  // A moved connection until the new server is heard from: the new server stays silent
  // until our first packet reaches it, so if that one ACK is lost (and we have nothing
  // unacknowledged to retransmit) both ends would wait forever. We repeat it.
  struct AwaitingPath {
    migrate::FlowKey flow;  // as it is now, toward the new server (watched by guard_)
    int pokes_left;
  };

  Node& node_;
  migrate::MigrationGuard guard_;
  udp_pcb* pcb_ = nullptr;
  std::vector<AwaitingPath> awaiting_;
  UvHandle<uv_timer_t> poke_timer_;
  MoveFollowerCounters counters_;
};

}  // namespace roam
