// WhitelistFilter: the input filter in front of every listener while a SourceWhitelist is
// in whitelist mode (seed 004: the next proxy admits only the clients the attacked front
// ratified; the attacked front, after informing, only those too). Defense stage, added
// before the SYN defense, so a dropped SYN costs no cookie and no SYN-ACK. It drops a TCP
// segment when all of these hold: whitelist mode is on; its destination port has a
// listener (the carrier port, the channel port); its source is not on the list; it is a
// SYN, or no lwIP connection has its flow (our own connections and the established ones go
// on: outgoing legs to an origin, channels, sessions). Counted (drops); nothing is logged per
// packet (a flood would fill the log), the mode's start and end are logged by the owner.
// Loop thread only.
#pragma once

#include <cstdint>

#include "stack/defense/source_whitelist.hpp"
#include "stack/node.hpp"

namespace roam::defense {

struct WhitelistCounters {
  uint64_t drops = 0;   // segments from sources not on the list, in whitelist mode
  uint64_t passed = 0;  // segments to listeners from listed sources, in whitelist mode
};

class WhitelistFilter final : public InputFilter {
 public:
  // Adds itself to the node's defense stage; `whitelist` must outlive it.
  WhitelistFilter(Node& node, const SourceWhitelist& whitelist);
  ~WhitelistFilter() override;
  WhitelistFilter(const WhitelistFilter&) = delete;
  WhitelistFilter& operator=(const WhitelistFilter&) = delete;

  FilterVerdict on_input(const InboundPacket& packet) override;
  const WhitelistCounters& counters() const { return counters_; }

 private:
  Node& node_;
  const SourceWhitelist& whitelist_;
  WhitelistCounters counters_;
};

}  // namespace roam::defense
