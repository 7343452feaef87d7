// Authenticators of the NAT handover's synthetic handshake (DESIGN.md section 4; seed
// 000's fake three-way handshake, made unforgeable). The old server draws a fresh random
// token for each client whose connections it moves, gives it to the new server with the
// sessions and to the client in the Address Change Message (both over authenticated
// channels). The client's synthetic SYN and the new server's SYN-ACK each carry a tag over
// what identifies them: which of the two it is, the connection id, the sequence and
// acknowledgement numbers, and the one sequence number it tells the other end (the
// sender's rcv_nxt). Nothing a NAT rewrites (addresses, ports) is covered: the new server
// must accept the client at whatever address the NAT gives it.
//
// Keyed BLAKE2b (libsodium crypto_generichash) truncated to 96 bits: only a handful of
// these are made per moved connection, so speed does not matter, and an attacker gets one
// guess per packet at odds 2^-96. Any thread.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace roam::crypto {

inline constexpr size_t handover_token_bytes = 32;
using HandoverToken = std::array<uint8_t, handover_token_bytes>;
inline constexpr size_t handover_tag_bytes = 12;
using HandoverTag = std::array<uint8_t, handover_tag_bytes>;

enum class HandoverSegmentKind : uint8_t { syn = 1, syn_ack = 2, window = 3 };

struct HandoverFields {
  HandoverSegmentKind kind;
  uint64_t connection_id;
  uint32_t seq;
  uint32_t ack;           // 0 in a SYN
  uint32_t peer_rcv_nxt;  // the sender's rcv_nxt, carried in the option
};

// A fresh token from libsodium's CSPRNG.
HandoverToken random_handover_token();
HandoverTag handover_tag(const HandoverToken& token, const HandoverFields& fields);
// Constant-time comparison with the tag a segment carried.
bool verify_handover_tag(const HandoverToken& token, const HandoverFields& fields,
                         std::span<const uint8_t, handover_tag_bytes> carried);

}  // namespace roam::crypto
