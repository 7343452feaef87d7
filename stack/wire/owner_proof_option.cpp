#include "stack/wire/owner_proof_option.hpp"

#include <cstring>

namespace roam::wire {

size_t write_owner_proof_option(const OwnerProofOption& option, std::span<uint8_t> out) {
  if (out.size() < owner_proof_option_bytes) return 0;
  out[0] = tcp_option_experimental;
  out[1] = static_cast<uint8_t>(owner_proof_option_bytes);
  out[2] = static_cast<uint8_t>(owner_proof_exid >> 8);
  out[3] = static_cast<uint8_t>(owner_proof_exid);
  std::memcpy(out.data() + 4, option.channel_tag.data(), owner_proof_tag_bytes);
  std::memcpy(out.data() + 4 + owner_proof_tag_bytes, option.mac.data(), owner_proof_mac_bytes);
  return owner_proof_option_bytes;
}

MacOptionLookup find_owner_proof_option(std::span<const uint8_t> options, OwnerProofOption& option) {
  std::span<const uint8_t> data;
  auto lookup = find_experimental_option(options, owner_proof_exid, data);
  if (lookup != MacOptionLookup::found) return lookup;
  if (data.size() != owner_proof_tag_bytes + owner_proof_mac_bytes) return MacOptionLookup::malformed;
  std::memcpy(option.channel_tag.data(), data.data(), owner_proof_tag_bytes);
  std::memcpy(option.mac.data(), data.data() + owner_proof_tag_bytes, owner_proof_mac_bytes);
  return MacOptionLookup::found;
}

}  // namespace roam::wire
