// roam-client's counters in a CounterRegistry, for its --metrics endpoint: the follower's
// (control channels, ACMs, moves, handover, changeover), the node's packets, and the
// carriers lost by reason. The server's come from MigrationService::register_counters.
#pragma once

#include <array>
#include <cstdint>

#include "base/counters.hpp"
#include "stack/dead_peer.hpp"
#include "stack/migrate/follower.hpp"
#include "stack/node.hpp"

namespace roam {

// `follower` may be null (--no-follow). Everything registered must outlive `registry`.
void register_client_counters(CounterRegistry& registry, const Node& node, const Follower* follower);

}  // namespace roam
