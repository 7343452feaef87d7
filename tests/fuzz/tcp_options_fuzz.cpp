// libFuzzer target for the RFC 6994 options Roamstack reads from TCP headers of network
// input (stack/wire/owner_proof_option, segment_mac_option): never reads out of range, and
// a found owner proof re-encodes to an option that is found again with the same content.
// Run: fuzz_tcp_options -max_len=60 <scratch-dir> (built with Clang only).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "stack/wire/owner_proof_option.hpp"
#include "stack/wire/segment_mac_option.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> options(data, size);
  std::array<uint8_t, roam::wire::segment_mac_bytes> mac{};
  (void)roam::wire::find_segment_mac(options, mac);
  roam::wire::OwnerProofOption proof;
  if (roam::wire::find_owner_proof_option(options, proof) == roam::wire::MacOptionLookup::found) {
    std::vector<uint8_t> again(roam::wire::owner_proof_option_bytes);
    if (roam::wire::write_owner_proof_option(proof, again) != again.size()) __builtin_trap();
    roam::wire::OwnerProofOption decoded;
    if (roam::wire::find_owner_proof_option(again, decoded) != roam::wire::MacOptionLookup::found) __builtin_trap();
    if (!(decoded == proof)) __builtin_trap();
  }
  return 0;
}
