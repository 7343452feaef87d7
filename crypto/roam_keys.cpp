#include "crypto/roam_keys.hpp"

#include <cstring>
#include <string_view>

#include "crypto/sodium.hpp"

namespace roam::crypto {

namespace {

constexpr std::string_view epoch_label = "roamstack roam epoch v1";
constexpr std::string_view server_label = "roamstack roam server v1";
constexpr std::string_view port_label = "roamstack roam port v1";

uint64_t first_u64(const ChainKey& digest) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8; ++i) v = (v << 8) | digest[i];
  return v;
}

}  // namespace

uint32_t epoch_length_bits(const ChainKey& key, unsigned m) {
  if (m == 0) return 0;
  uint64_t v = first_u64(labelled_hash(epoch_label, key));
  return static_cast<uint32_t>(v >> (64 - m));
}

uint32_t server_index(const ChainKey& key, uint32_t servers) {
  uint64_t v = first_u64(labelled_hash(server_label, key));
  // floor(v * servers / 2^64) without a 128-bit type: v = a * 2^32 + b.
  uint64_t a = v >> 32;
  uint64_t b = v & 0xffffffffu;
  uint64_t high = a * servers + ((b * servers) >> 32);
  return static_cast<uint32_t>(high >> 32);
}

uint16_t port_selector(const ChainKey& key) {
  ChainKey digest = labelled_hash(port_label, key);
  return static_cast<uint16_t>((digest[0] << 8) | digest[1]);
}

}  // namespace roam::crypto
