// OutputHold: keeps named flows silent until released (seed 003, "a client moves"). When
// this host's own address changes, its connections are rebound to the new address at
// once, but must send nothing until their peer was told: the peer does not know the new
// 4-tuple yet and would answer with RST, and a strict NAT in front of us admits a new
// 4-tuple only from a SYN, which the synthetic handshake sends first. Output of a held
// flow is dropped as if lost on the wire (TCP recovers it once released) and counted.
// Owned by the Follower; registers itself on the Node's output chain. Loop thread only.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_set>

#include "stack/flow_key.hpp"
#include "stack/node.hpp"

namespace roam::migrate {

struct OutputHoldCounters {
  uint64_t flows_held = 0;
  uint64_t packets_held = 0;  // dropped while their flow was held
};

class OutputHold final : public OutputFilter {
 public:
  explicit OutputHold(Node& node);
  ~OutputHold() override;
  OutputHold(const OutputHold&) = delete;
  OutputHold& operator=(const OutputHold&) = delete;

  void hold(const FlowKey& flow);
  void release(const FlowKey& flow) { held_.erase(flow); }
  bool is_held(const FlowKey& flow) const { return held_.count(flow) != 0; }
  size_t held_count() const { return held_.size(); }

  FilterVerdict on_output(std::span<const uint8_t> packet) override;
  const OutputHoldCounters& counters() const { return counters_; }

 private:
  Node& node_;
  std::unordered_set<FlowKey, FlowKeyHash> held_;
  OutputHoldCounters counters_;
};

}  // namespace roam::migrate
