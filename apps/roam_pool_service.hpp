// roam-server --roam-pool: this server as one member of a roaming pool (seed 002 section
// IV). It knows from the pool's hash chain whether it is the active server of the current
// epoch, logs every epoch change and its role, shows both in `roamctl status` (group
// `roam`) and, while it does not accept (not active and outside the transitional
// interval), drops inbound client traffic in the node's defense stage: new connections
// (SYNs) by default, every packet with --roam-drop all. Pool traffic (the control port,
// kernel TCP) never passes the node and is never dropped. Every client channel gets a
// ROAM_UPDATE (with the pool) when it is set up and one every update-seconds (PROTOCOL.md
// 13.4). The channel port stays open on every member (a client learns the schedule from
// any member it knows). At a roam the member that was active moves every session it holds
// to the new active member's control port (RoamMovePlan decides when, MigrationService
// moves; PROTOCOL.md 13.6). Owned by the server; the node's loop thread.
#pragma once

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/roam_move_plan.hpp"
#include "apps/roam_pool_file.hpp"
#include "base/counters.hpp"
#include "base/uv_handle.hpp"
#include "stack/control/channel_server.hpp"
#include "stack/control/roam_member.hpp"
#include "stack/migrate/migration_service.hpp"
#include "stack/migrate/session_table.hpp"
#include "stack/node.hpp"

namespace roam {

enum class RoamDrop : uint8_t { syn, all };

class RoamPoolService final : public InputFilter {
 public:
  // What a pool member works with; every pointer may be null (a unit test), else
  // outlives the service.
  struct Parts {
    ChannelServer* channels = nullptr;      // ROAM_UPDATEs go out through it
    uint16_t channel_port = 0;              // never dropped (0: none)
    MigrationService* migration = nullptr;  // moves the sessions at a roam
    SessionTable* table = nullptr;          // the sessions this member holds
  };
  // Reads the pool file and the chain seed, finds this member among `own_addresses`.
  // Throws ConfigError. Generating the chain costs `length` hashes (2^20: about a second).
  RoamPoolService(Node& node, const std::string& pool_path, std::optional<uint32_t> unit_ms,
                  const std::vector<IpAddress>& own_addresses, RoamDrop drop, CounterRegistry& registry, Parts parts);
  ~RoamPoolService() override;  // also unhooks the channel server's update source
  RoamPoolService(const RoamPoolService&) = delete;
  RoamPoolService& operator=(const RoamPoolService&) = delete;

  FilterVerdict on_input(const InboundPacket& packet) override;
  control::RoamMember& member() { return *member_; }
  // Each member's control port from the pool file ("": none given), this server's too.
  const std::vector<std::string>& member_controls() const { return controls_; }
  // A session was resumed here from a checkpoint the member at `left` sealed (a client took
  // it for dead): it is no move target for a while (RoamMovePlan::avoid). Not a member: nothing.
  void resumed_away_from(const IpAddress& left);

 private:
  static void on_timer(uv_timer_t* timer) noexcept;
  void tick();
  void move_to_active(uint64_t epoch, uint32_t active);

  Node& node_;
  std::unique_ptr<control::RoamMember> member_;
  RoamDrop drop_;
  Parts parts_;
  std::vector<std::string> controls_;  // each member's control port ("": none)
  RoamMovePlan plan_;
  struct MoveCounters {
    uint64_t started = 0;         // moves to the active member started at a roam
    uint64_t failed = 0;          // ended with a failure (the sessions stayed here)
    uint64_t not_started = 0;     // could not start (no control port, a move running, ...)
    uint64_t sessions_moved = 0;  // sessions the new active member took
    uint64_t avoided = 0;         // resumes here that made a member no move target for a while
  } moves_;
  std::string last_move_error_;  // logged once per distinct error
  // A move's done callback may outlive this (the migration service is destroyed after it).
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  uint64_t update_interval_ms_ = 10'000;
  uint64_t last_update_ms_ = 0;  // loop time
  UvHandle<uv_timer_t> timer_;  // logs epoch and role changes
  uint64_t epoch_ = 0;
  std::string role_;
};

}  // namespace roam
