#include "stack/defense/prefix_budget.hpp"

#include <sodium.h>

#include <algorithm>
#include <bit>

namespace roam::defense {

PrefixBudget::PrefixBudget(PrefixBudgetConfig config) : config_(config) {
  key_ = config_.seed;
  if (key_ == 0) randombytes_buf(&key_, sizeof key_);
  key_ |= 1;  // odd: the multiply below is a bijection
  slots_.resize(std::bit_ceil(std::max<size_t>(config_.slots, 1)));
}

size_t PrefixBudget::index_of(const SourcePrefix& prefix) const {
  // Keyed multiplicative mixing, not a MAC: a flood that cannot read the key cannot pick
  // the prefixes that share a client's slot (and sharing only resets that slot, full).
  uint64_t h = (prefix.bits ^ (uint64_t{prefix.version} << 56)) + key_;
  h ^= h >> 29;
  h *= key_;
  h ^= h >> 32;
  h *= 0x9E3779B97F4A7C15ull;
  h ^= h >> 29;
  return static_cast<size_t>(h) & (slots_.size() - 1);
}

bool PrefixBudget::take(const SourcePrefix& prefix, uint64_t now_ms) {
  if (config_.per_second == 0) return true;
  const uint64_t burst = uint64_t{config_.burst} * 1000;
  Slot& slot = slots_[index_of(prefix)];
  if (!slot.used || !(slot.prefix == prefix)) {
    slot.prefix = prefix;
    slot.used = true;
    slot.refilled_ms = now_ms;
    slot.milli_tokens = static_cast<uint32_t>(burst);
  } else if (now_ms > slot.refilled_ms) {
    const uint64_t refill = (now_ms - slot.refilled_ms) * config_.per_second;  // milli-tokens
    slot.milli_tokens = static_cast<uint32_t>(std::min(burst, slot.milli_tokens + refill));
    slot.refilled_ms = now_ms;
  }
  if (slot.milli_tokens < 1000) return false;
  slot.milli_tokens -= 1000;
  return true;
}

}  // namespace roam::defense
