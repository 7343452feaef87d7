// Link rebind datagram (docs/PROTOCOL.md 3.8): a roam-client on a UDP link tells the
// server's UdpLink "the inner address X is now reached at the endpoint this datagram came
// from", after its host's address changed or a NAT in front of it rebound. The link is not
// encrypted, so the datagram is authenticated with a per-client link key that only ever
// travelled inside the control channel (LINK_KEY), and carries a strictly increasing
// counter so a captured one cannot be replayed. Pure encode/decode; any thread.
//
// Layout (big-endian), 48 bytes for IPv4, 60 for IPv6:
//   u8  type = 0x1A        (high nibble 1: never read as an IPv4 or IPv6 packet)
//   u8  format version = 1
//   u8  ip version (4 or 6) of the inner address
//   u8  reserved = 0
//   inner address (4 or 16 bytes): the client's address inside the tunnel
//   u64 counter            (strictly increasing per key; the client uses Unix microseconds)
//   32-byte MAC            crypto_auth (HMAC-SHA-512-256) over every byte before it, keyed
//                          with the link key
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/ip_address.hpp"

namespace roam {

inline constexpr uint8_t link_rebind_type = 0x1A;
inline constexpr uint8_t link_rebind_format = 1;
inline constexpr size_t link_key_bytes = 32;
inline constexpr size_t link_rebind_mac_bytes = 32;
inline constexpr size_t link_rebind_header_bytes = 4;
using LinkKey = std::array<uint8_t, link_key_bytes>;

struct LinkRebind {
  IpAddress inner;
  uint64_t counter = 0;
  std::array<uint8_t, link_rebind_mac_bytes> mac{};
};

// Whether a datagram is meant as a link rebind (its first byte), whatever else it holds.
inline bool is_link_rebind(std::span<const uint8_t> datagram) {
  return !datagram.empty() && datagram[0] == link_rebind_type;
}

// The datagram for `inner` and `counter`, MACed with `key`.
std::vector<uint8_t> encode_link_rebind(const IpAddress& inner, uint64_t counter, const LinkKey& key);

// The fields of a well-formed datagram (exact length, known format, zero reserved byte);
// nullopt otherwise. Does not check the MAC.
std::optional<LinkRebind> decode_link_rebind(std::span<const uint8_t> datagram);

// Whether the datagram's MAC is right under `key` (constant time). The datagram must have
// decoded.
bool verify_link_rebind(std::span<const uint8_t> datagram, const LinkKey& key);

}  // namespace roam
