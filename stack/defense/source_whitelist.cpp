#include "stack/defense/source_whitelist.hpp"

#include <algorithm>

namespace roam::defense {

SourceWhitelist::Key SourceWhitelist::key_of(const IpAddress& address) {
  Key key{};
  key[0] = address.version;
  std::copy_n(address.bytes.begin(), address.size(), key.begin() + 1);
  return key;
}

size_t SourceWhitelist::add(std::span<const IpAddress> addresses) {
  size_t added = 0;
  for (const auto& address : addresses) {
    Key key = key_of(address);
    if (entries_.contains(key)) continue;
    if (entries_.size() >= max_entries_) {
      ++refused_;
      continue;
    }
    entries_.insert(key);
    ++added;
  }
  return added;
}

void SourceWhitelist::activate(uint64_t now_ms, uint64_t hold_ms) {
  ++activations_;
  active_until_ms_ = std::max(active_until_ms_, now_ms + hold_ms);
}

void SourceWhitelist::clear() {
  entries_.clear();
  active_until_ms_ = 0;
}

bool SourceWhitelist::contains(const IpAddress& address) const {
  return entries_.contains(key_of(address));
}

}  // namespace roam::defense
