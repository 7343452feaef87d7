// SegmentMacGuard: the per-segment MAC on carrier connections (seed 003 section 3.4;
// `--segment-mac` on roam-server and roam-client). Once a connection is protected at this
// host, every segment it sends carries the MAC option (wire/segment_mac_option) and every
// segment it receives must carry a valid one: a segment without it, or with a wrong one,
// is dropped before lwIP sees it and counted. Keys come from the control channel that
// registered the connection (crypto/segment_mac). Loop thread only.
//
// A connection becomes protected at each end when its id is registered on a channel
// whose two ends both offered the capability: the client as it sends the registration,
// the server as it accepts it. A connection that moves takes its state along in its
// snapshot (state_of on the old host, adopt on the new one), so it is checked from its
// first segment on the new path; the client keeps signing across the move (rebind).
// A new registration of a protected connection replaces its key without losing a segment
// (the idea of TCP-AO's key rollover, RFC 5925 section 7.5, without a key id on the wire):
// until a segment verifies under the new key, the previous one still verifies input. The
// client, which registers first, also keeps signing with the previous key until then; the
// server switches as it accepts the registration, and its first segment under the new key
// switches the client. A registration the server refused leaves both on the old key.
//
// A control channel's own connection is protected the same way once its handshake is done
// and both HELLOs offered the capability, keyed from that handshake: so a segment written
// into the channel's byte stream (an old frame re-sequenced to the expected number) is
// dropped here instead of making the channel reset itself.
//
// On a link with TUN offloads (TSO, checksum offload) a protected flow's multi-MSS
// segment is cut into MSS-sized pieces by the Node, each signed and sent on its own (the
// device would copy one MAC onto every piece it cuts); unprotected flows keep TSO. The
// link completes the TCP checksum of the signed packet (virtio NEEDS_CSUM, summed from
// the final header). Linux GRO merges no two segments whose options differ, so signed
// segments reach the peer one by one.
//
// Runs in the Node's authenticate stage: before the handover and the guard, so no
// segment of a protected flow unparks or rebinds anything unless its MAC verified. The
// NAT handover's synthetic segments carry no segment MAC: they pass on to the handover
// stage, which authenticates them with their own tag (and the Node drops any it leaves).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "crypto/segment_mac.hpp"
#include "stack/flow_key.hpp"
#include "stack/node.hpp"
#include "stack/wire/connection_snapshot.hpp"

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
  uint64_t adopted = 0;           // states taken over from a snapshot
  uint64_t verified_previous_key = 0;  // verified under the key a re-registration replaced
  uint64_t handover_passed = 0;   // unsigned handover segments left to the handover stage
  uint64_t rebound = 0;           // protected flows that followed their connection to a new path
  uint64_t rekeyed = 0;           // re-registrations of a protected connection (key rollover)
};

class SegmentMacGuard final : public InputFilter, public OutputRewriter {
 public:
  explicit SegmentMacGuard(Node& node);
  ~SegmentMacGuard() override;
  // The guard running on `node` (nullptr: --segment-mac is off), for a connection that
  // protects itself without being handed one: a control channel's own carrier connection
  // (stack/control/channel_connection.hpp).
  static SegmentMacGuard* on(const Node& node);
  SegmentMacGuard(const SegmentMacGuard&) = delete;
  SegmentMacGuard& operator=(const SegmentMacGuard&) = delete;

  // Protects the connection whose pcb this is, with a key from the channel's handshake;
  // `outbound`: which end this host is (the direction its segments travel).
  void protect(const tcp_pcb* pcb, uint64_t connection_id, std::span<const uint8_t, 64> handshake_hash,
               crypto::SegmentDirection outbound);
  // Stops protecting a flow (the connection left this host, or it was never imported).
  void forget(const FlowKey& flow);
  bool is_protected(const FlowKey& flow) const { return flows_.count(flow) != 0; }
  // Forgets flows whose connection is gone. An adopted flow whose pcb is still parked
  // (not yet known to lwIP) stays until it shows up or forget() is called for it; so does
  // a flow `held` answers true for: a connection frozen by a move in flight is out of
  // lwIP's active list too (the move guard silences it), and a refused move resumes it.
  void prune(const std::function<bool(const FlowKey&)>& held = {});

  // The connection's MAC state, to travel in its snapshot (ConnectionSnapshot::segment_mac);
  // nullopt when it is not protected here. The copy holds the key: it wipes itself.
  std::optional<wire::SegmentMacState> state_of(const tcp_pcb* pcb) const;
  std::optional<wire::SegmentMacState> state_of(const FlowKey& flow) const;
  // Protects an imported connection with the state its old host sent, before its first
  // segment arrives (`pcb` may be parked). Replaces any state the flow had.
  void adopt(const tcp_pcb* pcb, const wire::SegmentMacState& state);
  void adopt(const FlowKey& flow, const wire::SegmentMacState& state);
  // The connection's flow changed and its key stays (a parked import rebound to where the
  // NAT handover found the client; a client following its server's move). False when
  // `from` is not protected; a state `to` had is replaced.
  bool rebind(const FlowKey& from, const FlowKey& to);

  const SegmentMacCounters& counters() const { return counters_; }
  std::string counters_text() const;

  FilterVerdict on_input(const InboundPacket& packet) override;
  std::span<const uint8_t> rewrite(std::span<const uint8_t> packet, std::span<uint8_t> scratch) override;
  bool per_piece(std::span<const uint8_t> packet) override;  // a protected flow's: sign each MSS

 private:
  struct Entry {
    uint64_t connection_id = 0;
    crypto::SegmentDirection outbound = crypto::SegmentDirection::client_to_server;
    std::unique_ptr<crypto::SegmentMacKey> key;
    std::unique_ptr<crypto::SegmentMacKey> previous_key;  // until a segment verifies under `key`
    bool sign_with_previous = false;  // the client's side of a rollover, until then
    bool adopted_parked = false;  // adopted, its pcb not yet seen in lwIP's active list
  };
  Node& node_;
  std::unordered_map<FlowKey, Entry, FlowKeyHash> flows_;
  SegmentMacCounters counters_;
};

}  // namespace roam
