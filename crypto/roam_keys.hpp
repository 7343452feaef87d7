// What one chain key K_i decides (seed 002 section IV-A), one derived hash per purpose so
// that learning one output says nothing about another: the epoch length bits
// R_i = MSB_m(H'(K_i)), the active server S_i = servers[index from H''(K_i)], and a port
// selector for services that also hop ports. Pure, any thread; PROTOCOL.md 13.2.
#pragma once

#include <cstdint>

#include "crypto/hash_chain.hpp"

namespace roam::crypto {

inline constexpr unsigned max_epoch_bits = 24;  // epochs of at most 2^24 units
inline constexpr uint32_t max_roam_servers = 64;

// H'(K) = BLAKE2b-256("roamstack roam epoch v1" | K); R = its first m bits, big-endian
// (m = 0: 0). m must be <= max_epoch_bits.
uint32_t epoch_length_bits(const ChainKey& key, unsigned m);

// H''(K) = BLAKE2b-256("roamstack roam server v1" | K); with v = its first 8 bytes as a
// big-endian u64, the index is floor(v * servers / 2^64): for servers = 2^b exactly the
// paper's MSB_b, and for any other count as even as 2^-64 allows. servers >= 1.
uint32_t server_index(const ChainKey& key, uint32_t servers);

// H'''(K) = BLAKE2b-256("roamstack roam port v1" | K); its first 2 bytes, big-endian.
uint16_t port_selector(const ChainKey& key);

}  // namespace roam::crypto
