// SourceWhitelist: the sources a front still admits while it is under attack (seed 004's
// Informer): the addresses of clients verified by an authenticated control channel, told
// by a RATIFY from the attacked member of the pool (the next proxy) or collected by the
// attacked front itself when it informs. While whitelist mode lasts (until the latest
// deadline any activation set), everything from another source is dropped at the
// listeners (WhitelistFilter). Whole addresses (/32, /128): a client behind a NAT is
// known by the NAT's address, and so is everyone behind the same NAT. Pure: fed the
// loop's clock. Loop thread only.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>

#include "base/ip_address.hpp"

namespace roam::defense {

class SourceWhitelist {
 public:
  explicit SourceWhitelist(size_t max_entries = 1'000'000) : max_entries_(max_entries) {}

  // Adds addresses (kept until clear()); returns how many were new. Beyond max_entries
  // no more are added (counted in refused()).
  size_t add(std::span<const IpAddress> addresses);
  // Whitelist mode on until now_ms + hold_ms (a later deadline already set stays).
  void activate(uint64_t now_ms, uint64_t hold_ms);
  // Ends whitelist mode and forgets every address.
  void clear();

  bool active(uint64_t now_ms) const { return now_ms < active_until_ms_; }
  bool contains(const IpAddress& address) const;
  // Whether a packet from `source` may pass now: always outside whitelist mode.
  bool admits(const IpAddress& source, uint64_t now_ms) const { return !active(now_ms) || contains(source); }

  size_t size() const { return entries_.size(); }
  uint64_t active_until_ms() const { return active_until_ms_; }
  uint64_t activations() const { return activations_; }
  uint64_t refused() const { return refused_; }

 private:
  using Key = std::array<uint8_t, 17>;  // version, then the address bytes
  static Key key_of(const IpAddress& address);

  size_t max_entries_;
  std::set<Key> entries_;
  uint64_t active_until_ms_ = 0;
  uint64_t activations_ = 0;
  uint64_t refused_ = 0;
};

}  // namespace roam::defense
