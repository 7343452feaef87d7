// SegmentMacGuard: the per-segment MAC on carrier connections (seed 003 section 3.4;
// `--segment-mac` on roam-server and roam-client). Once a connection is protected at this
// host, every segment it sends carries the MAC option (wire/segment_mac_option) and every
// segment it receives must carry a valid one: a segment without it, or with a wrong one,
// is dropped before lwIP sees it and counted. Keys come from the control channel that
// registered the connection (crypto/segment_mac). Loop thread only.
//
// A connection becomes protected at each end when its id is registered on a channel
// whose two ends both offered the capability: the client as it sends the registration,
// the server as it accepts it. Until then, and while a moved connection waits for its
// new channel, its segments are neither signed nor checked.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "crypto/segment_mac.hpp"
#include "stack/flow_key.hpp"
#include "stack/node.hpp"

namespace roam {

// HELLO capability bit: this host signs carrier segments when the peer does too.
inline constexpr uint32_t capability_segment_mac = 1;

struct SegmentMacCounters {
  uint64_t protected_connections = 0;
  uint64_t signed_segments = 0;
  uint64_t verified_segments = 0;
  uint64_t dropped_missing = 0;   // a protected connection's segment without the option
  uint64_t dropped_bad = 0;       // the MAC did not verify, or the options were malformed
  uint64_t unsigned_no_room = 0;  // a segment whose header had no room (should not happen)
};

class SegmentMacGuard final : public InputFilter, public OutputRewriter {
 public:
  explicit SegmentMacGuard(Node& node);  // throws ConfigError on a link with offloads
  ~SegmentMacGuard() override;
  SegmentMacGuard(const SegmentMacGuard&) = delete;
  SegmentMacGuard& operator=(const SegmentMacGuard&) = delete;

  // Protects the connection whose pcb this is, with a key from the channel's handshake;
  // `outbound`: which end this host is (the direction its segments travel).
  void protect(const tcp_pcb* pcb, uint64_t connection_id, std::span<const uint8_t, 64> handshake_hash,
               crypto::SegmentDirection outbound);
  // Stops protecting a flow (the connection left this host, or its path changed).
  void forget(const FlowKey& flow);
  bool is_protected(const FlowKey& flow) const { return flows_.count(flow) != 0; }
  // Forgets flows whose connection is gone.
  void prune();

  const SegmentMacCounters& counters() const { return counters_; }
  std::string counters_text() const;

  FilterVerdict on_input(const InboundPacket& packet) override;
  std::span<const uint8_t> rewrite(std::span<const uint8_t> packet, std::span<uint8_t> scratch) override;

 private:
  struct Entry {
    uint64_t connection_id;
    crypto::SegmentDirection outbound;
    std::unique_ptr<crypto::SegmentMacKey> key;
  };
  Node& node_;
  std::unordered_map<FlowKey, Entry, FlowKeyHash> flows_;
  SegmentMacCounters counters_;
};

}  // namespace roam
