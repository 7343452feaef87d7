// The Prometheus text exposition format (version 0.0.4) of counter registries: every entry
// as `roamstack_<group>_<name> VALUE` with its HELP and TYPE lines (counter, or gauge for
// a registry gauge: sessions, channels, parked), then each registry's histograms
// (roamstack_changeover_seconds) as `_bucket{le="..."}`, `_sum` and `_count` lines under
// TYPE histogram. Pure: what is served is what tests parse.
#pragma once

#include <string>
#include <vector>

#include "base/counters.hpp"
#include "stack/dead_peer.hpp"

namespace roam {

std::string metrics_text(const std::vector<const CounterRegistry*>& registries);

// Registers the process-wide counts of lost lwIP connections by reason (the exit log's
// "connections lost" line) as group "connections": lost_reset_by_peer, lost_refused, ...
void add_connection_losses(CounterRegistry& registry);

}  // namespace roam
