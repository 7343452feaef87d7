// libFuzzer target for RATIFY (stack/migrate/ratify.hpp; docs/PROTOCOL.md 12.2): what a
// pool member's control-port peer sends to whitelist clients. The decoder must not crash;
// whatever decodes must encode back to exactly the same bytes, and the filter must judge
// it without crashing (and accept nothing that names an address a client cannot have).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "stack/control/acm_filter.hpp"
#include "stack/migrate/ratify.hpp"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  auto decoded = roam::migrate::decode_ratify(bytes);
  if (!decoded) return 0;
  auto encoded = roam::migrate::encode_ratify(*decoded);
  check(encoded.size() == size && std::equal(encoded.begin(), encoded.end(), bytes.begin()));
  roam::migrate::RatifyFilter filter;
  roam::crypto::PublicKey sender{};
  sender.fill(7);
  auto verdict = filter.check(*decoded, sender, true, decoded->issued_at_ms);
  if (verdict == roam::migrate::RatifyVerdict::accept) {
    for (const auto& address : decoded->addresses) check(roam::control::acceptable_new_address(address, address));
    filter.remember(*decoded, sender);
    check(filter.check(*decoded, sender, true, decoded->issued_at_ms) == roam::migrate::RatifyVerdict::replayed);
  }
  return 0;
}
