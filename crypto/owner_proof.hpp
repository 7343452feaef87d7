// Owner proofs: how a server learns, from a carrier connection's own SYN, which client
// key owns it (issue 11: a registration for a connection another key owns is refused).
// Both ends of a control channel derive, with keyed BLAKE2b from the channel's Noise
// handshake hash, a public channel tag (names the channel in a SYN) and a secret owner
// key K_own. Every carrier SYN the client sends to that server carries the tag and
// MAC(K_own, label | client ISN | server port), truncated to 64 bits.
//
// Only what a NAT in front of the client leaves alone is covered: the client's ISN (the
// upper half of the connection id, connection_id.hpp) and the server's port. The client's
// address and port are not (a NAT rewrites them, and the server must accept the proof
// wherever the NAT puts the client). A proof copied onto another SYN with the same ISN
// only makes a connection the victim owns, which the copier cannot register. A forger
// gets one guess per SYN at odds 2^-64. Any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "crypto/sodium.hpp"

namespace roam::crypto {

inline constexpr size_t owner_channel_tag_bytes = 8;
inline constexpr size_t owner_proof_mac_bytes = 8;
using OwnerChannelTag = std::array<uint8_t, owner_channel_tag_bytes>;
using OwnerProofMac = std::array<uint8_t, owner_proof_mac_bytes>;

class OwnerProofKey {
 public:
  static constexpr size_t key_bytes = 32;

  // Derives the tag and K_own from the channel's handshake hash (either end).
  explicit OwnerProofKey(std::span<const uint8_t, 64> handshake_hash);
  OwnerProofKey(const OwnerProofKey&) = delete;
  OwnerProofKey& operator=(const OwnerProofKey&) = delete;

  const OwnerChannelTag& channel_tag() const { return tag_; }
  OwnerProofMac mac(uint32_t client_isn, uint16_t server_port) const;
  // Constant-time comparison with the MAC a SYN carried.
  bool verify(uint32_t client_isn, uint16_t server_port, std::span<const uint8_t, owner_proof_mac_bytes> carried) const;

 private:
  OwnerChannelTag tag_{};
  SecretBytes<key_bytes> key_;
};

}  // namespace roam::crypto
