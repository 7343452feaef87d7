// RATIFY (seed 004's "ratify notification"): an attacked server tells the next proxy of
// its pool which client addresses it verified (each had an authenticated control channel
// there), before it sends those clients there. The next proxy whitelists them: while its
// whitelist mode lasts, its listeners drop every packet from any other source
// (stack/defense/source_whitelist.hpp). It travels on the control port (frame type 7,
// docs/PROTOCOL.md 4.6), which authenticates and encrypts it; only a pool member may send
// it. Its own sequence number and issue time let the receiver refuse a replayed or stale
// one on top of that (a recorded frame cannot be replayed into a new control connection,
// but a member's old RATIFY must not renew a whitelist long after its attack).
//
//   u8 version (1) | u64 sequence | u64 issued_at_ms (Unix) | u32 hold_s (1..86400)
//   | u16 count (0..4096) | count x (u8 ip version 4|6 | 4 or 16 address bytes)
//
// Pure: encode/decode, and RatifyFilter, fed the clock. Any thread (the filter: one owner).
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "base/ip_address.hpp"
#include "base/result.hpp"
#include "crypto/identity_key.hpp"

namespace roam::migrate {

inline constexpr uint8_t ratify_version = 1;
inline constexpr size_t max_ratify_addresses = 4096;  // more: several frames
inline constexpr uint32_t max_ratify_hold_s = 86400;

struct Ratify {
  uint64_t sequence = 0;
  uint64_t issued_at_ms = 0;
  uint32_t hold_s = 60;
  std::vector<IpAddress> addresses;
  bool operator==(const Ratify&) const = default;
};

enum class RatifyError : uint8_t { truncated, trailing_bytes, unknown_version, bad_field, oversized };
const char* ratify_error_name(RatifyError error);

// The ratify must be valid (decode_ratify(encode_ratify(r)) == r).
std::vector<uint8_t> encode_ratify(const Ratify& ratify);
// Refuses truncation, trailing bytes, a version other than 1, hold_s 0 or above the
// maximum, an ip version other than 4 or 6, more than max_ratify_addresses.
Result<Ratify, RatifyError> decode_ratify(std::span<const uint8_t> bytes);

enum class RatifyVerdict : uint8_t {
  accept,
  not_member,   // the sender proved no membership of the receiver's pool
  replayed,     // sequence not above the last accepted from this sender's key
  stale,        // issued more than max_age_ms ago
  from_future,  // issued more than max_future_ms ahead of our clock
  bad_address,  // names an address no client can have (unspecified, loopback, multicast, v4-mapped)
};
const char* ratify_verdict_name(RatifyVerdict verdict);

struct RatifyLimits {
  uint64_t max_age_ms = 30'000;
  uint64_t max_future_ms = 5'000;
  size_t max_senders = 256;  // remembered sequences (a pool is small); when full, one is forgotten
};

class RatifyFilter {
 public:
  explicit RatifyFilter(RatifyLimits limits = {}) : limits_(limits) {}
  // Checked in the order of the verdicts above; the first failure decides. A refusal
  // changes nothing.
  RatifyVerdict check(const Ratify& ratify, const crypto::PublicKey& sender, bool sender_is_member,
                      uint64_t now_unix_ms) const;
  // Records an accepted ratify's sequence for its sender.
  void remember(const Ratify& ratify, const crypto::PublicKey& sender);

 private:
  RatifyLimits limits_;
  std::map<crypto::PublicKey, uint64_t> last_sequence_;
};

}  // namespace roam::migrate
