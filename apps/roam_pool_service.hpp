// roam-server --roam-pool: this server as one member of a roaming pool (seed 002 section
// IV). It knows from the pool's hash chain whether it is the active server of the current
// epoch, logs every epoch change and its role, shows both in `roamctl status` (group
// `roam`) and, while it does not accept (not active and outside the transitional
// interval), drops inbound client traffic in the node's defense stage: new connections
// (SYNs) by default, every packet with --roam-drop all. Pool traffic (the control port,
// kernel TCP) never passes the node and is never dropped. Every client channel gets a
// ROAM_UPDATE (with the pool) when it is set up and one every update-seconds (PROTOCOL.md
// 13.4). Owned by the server; the node's loop thread.
#pragma once

#include <uv.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/roam_pool_file.hpp"
#include "base/counters.hpp"
#include "base/uv_handle.hpp"
#include "stack/control/channel_server.hpp"
#include "stack/control/roam_member.hpp"
#include "stack/node.hpp"

namespace roam {

enum class RoamDrop : uint8_t { syn, all };

class RoamPoolService final : public InputFilter {
 public:
  // Reads the pool file and the chain seed, finds this member among `own_addresses`.
  // Throws ConfigError. Generating the chain costs `length` hashes (2^20: about a second).
  RoamPoolService(Node& node, const std::string& pool_path, std::optional<uint32_t> unit_ms,
                  const std::vector<IpAddress>& own_addresses, RoamDrop drop, CounterRegistry& registry,
                  ChannelServer* channels);
  ~RoamPoolService() override;  // also unhooks the channel server's update source
  RoamPoolService(const RoamPoolService&) = delete;
  RoamPoolService& operator=(const RoamPoolService&) = delete;

  FilterVerdict on_input(const InboundPacket& packet) override;
  control::RoamMember& member() { return *member_; }

 private:
  static void on_timer(uv_timer_t* timer) noexcept;
  void tick();

  Node& node_;
  std::unique_ptr<control::RoamMember> member_;
  RoamDrop drop_;
  ChannelServer* channels_;  // may be null; outlives this
  uint64_t update_interval_ms_ = 10'000;
  uint64_t last_update_ms_ = 0;  // loop time
  UvHandle<uv_timer_t> timer_;  // logs epoch and role changes
  uint64_t epoch_ = 0;
  std::string role_;
};

}  // namespace roam
