// The Node's counters and its links' totals under the "node" group of a CounterRegistry
// (roamctl status, --metrics): one list for roam-server and roam-client. Loop thread only.
#pragma once

#include "base/counters.hpp"
#include "stack/node.hpp"

namespace roam {

// `node` must outlive the registry's reads.
void register_node_counters(CounterRegistry& r, const Node& node);

}  // namespace roam
