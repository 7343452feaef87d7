// Owner proofs on carrier SYNs (issue 11; crypto/owner_proof for what is proven, and
// stack/pcb_owner for where the owner is kept): the client's side signs, the server's side
// checks. Loop thread only.
//
// Client: once its control channel to a server is established and both ends offered
// capability_owner_proof, every carrier it opens to that server is armed with an
// OwnerProofSigner (TcpConnection::connect), so its SYN carries the channel's tag and the
// MAC over its ISN and the server's port.
// Server: the OwnerProofVerifier runs in the Node's authenticate stage. A SYN (no ACK)
// with the option names a channel by its tag: known and the MAC verifies -> the channel's
// client key is remembered as the flow's owner, and the listener's accept stores it in
// the pcb; known and the MAC fails -> dropped (forged; counted); unknown tag (the channel
// closed meanwhile) or no option -> passed without an owner (counted). A malformed
// option drops the SYN. Nothing but SYNs is looked at (nor the NAT handover's synthetic
// SYN: its connection exists, with the owner its snapshot brought).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "crypto/identity_key.hpp"
#include "crypto/owner_proof.hpp"
#include "stack/node.hpp"
#include "stack/pcb_owner.hpp"

namespace roam {

// HELLO capability bit: this host proves (client) or checks (server) carrier owners.
// (capability_segment_mac, segment_mac_guard.hpp, is 1.)
inline constexpr uint32_t capability_owner_proof = 2;

OwnerKey owner_key_of(const crypto::PublicKey& key);

// The client's signer for one channel: shared by the carriers it arms.
class OwnerProofSigner final : public SynOptionSource {
 public:
  explicit OwnerProofSigner(std::span<const uint8_t, 64> handshake_hash) : key_(handshake_hash) {}
  size_t option_length() const override;
  void write_option(uint32_t isn, uint16_t remote_port, std::span<uint8_t> out) const override;

 private:
  crypto::OwnerProofKey key_;
};

struct OwnerProofCounters {
  uint64_t syns_proven = 0;           // the owner was proven and remembered
  uint64_t syns_unproven = 0;         // no option: an owner-less connection
  uint64_t syns_unknown_channel = 0;  // a tag no channel has (any more): owner-less
  uint64_t syns_forged = 0;           // a known tag, a wrong MAC: dropped
  uint64_t syns_malformed = 0;        // a malformed option: dropped
};

class OwnerProofVerifier final : public InputFilter {
 public:
  explicit OwnerProofVerifier(Node& node);
  ~OwnerProofVerifier() override;
  OwnerProofVerifier(const OwnerProofVerifier&) = delete;
  OwnerProofVerifier& operator=(const OwnerProofVerifier&) = delete;

  // A channel that offered the capability is established: its SYNs will name it.
  void add_channel(const void* channel, std::span<const uint8_t, 64> handshake_hash, const crypto::PublicKey& owner);
  void remove_channel(const void* channel);
  size_t channel_count() const { return by_tag_.size(); }

  const OwnerProofCounters& counters() const { return counters_; }
  FilterVerdict on_input(const InboundPacket& packet) override;

 private:
  struct Channel {
    std::unique_ptr<crypto::OwnerProofKey> key;
    OwnerKey owner;
    const void* channel;
  };
  Node& node_;
  std::unordered_map<uint64_t, Channel> by_tag_;
  std::unordered_map<const void*, uint64_t> tag_of_;
  OwnerProofCounters counters_;
};

}  // namespace roam
