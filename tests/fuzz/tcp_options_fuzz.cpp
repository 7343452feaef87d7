// libFuzzer target for the RFC 6994 options Roamstack reads from TCP headers of network
// input (stack/wire/owner_proof_option, segment_mac_option, syn_options): never reads out
// of range, a found owner proof re-encodes to an option that is found again with the same
// content, and a SYN's MSS and window scale re-encode (as a SYN-ACK's) to the same values.
// Run: fuzz_tcp_options -max_len=60 <scratch-dir> (built with Clang only).
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "stack/wire/owner_proof_option.hpp"
#include "stack/wire/segment_mac_option.hpp"
#include "stack/wire/syn_options.hpp"

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
  const roam::wire::SynOptions syn = roam::wire::parse_syn_options(options);
  if (syn.mss) {
    std::array<uint8_t, roam::wire::synack_options_max> out{};
    const size_t length = roam::wire::write_synack_options(out, *syn.mss, syn.window_scale);
    const auto again = roam::wire::parse_syn_options(std::span<const uint8_t>(out).first(length));
    if (again.mss != syn.mss || again.window_scale != syn.window_scale) __builtin_trap();
  }
  return 0;
}
