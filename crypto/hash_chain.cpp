#include "crypto/hash_chain.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "crypto/sodium.hpp"

namespace roam::crypto {

namespace {

constexpr std::string_view chain_label = "roamstack chain v1";

uint64_t ceil_sqrt(uint64_t value) {
  auto root = static_cast<uint64_t>(std::sqrt(static_cast<double>(value)));
  while (root * root < value) ++root;
  while (root > 0 && (root - 1) * (root - 1) >= value) --root;
  return std::max<uint64_t>(root, 1);
}

}  // namespace

ChainKey labelled_hash(std::string_view label, const ChainKey& key) {
  if (label.size() > max_hash_label_bytes) throw std::invalid_argument("labelled_hash: label too long");
  // label | key in one buffer: the same bytes an independent implementation hashes.
  ScratchSecret<max_hash_label_bytes + chain_key_bytes> input;
  std::memcpy(input.data(), label.data(), label.size());
  std::memcpy(input.data() + label.size(), key.data(), chain_key_bytes);
  ChainKey out;
  crypto_generichash(out.data(), out.size(), input.data(), label.size() + chain_key_bytes, nullptr, 0);
  return out;
}

ChainKey chain_step(const ChainKey& key) {
  return labelled_hash(chain_label, key);
}

ChainKey chain_hash_down(ChainKey key, uint64_t steps) {
  for (uint64_t i = 0; i < steps; ++i) key = chain_step(key);
  return key;
}

HashChain::HashChain(const ChainKey& top_key, uint64_t top, uint64_t bottom) : top_(top), bottom_(bottom) {
  ensure_sodium();
  if (bottom > top) throw std::invalid_argument("hash chain: bottom above top");
  uint64_t range = top - bottom;
  if (range > max_range) throw std::invalid_argument("hash chain: longer than 2^32 keys");
  interval_ = ceil_sqrt(range);
  size_t count = range == 0 ? 1 : static_cast<size_t>((range + interval_ - 1) / interval_ + 1);
  checkpoints_.resize(count);
  checkpoints_[count - 1] = top_key;
  // Walk K_top down to K_bottom once, keeping the keys at bottom + c * interval.
  ChainKey current = top_key;
  for (uint64_t index = top; index > bottom; --index) {
    current = chain_step(current);
    uint64_t offset = index - 1 - bottom;
    if (offset % interval_ == 0) checkpoints_[offset / interval_] = current;
  }
  sodium_memzero(current.data(), current.size());
}

HashChain::~HashChain() { wipe(); }

HashChain::HashChain(HashChain&& other) noexcept
    : top_(other.top_), bottom_(other.bottom_), interval_(other.interval_), checkpoints_(std::move(other.checkpoints_)) {
  other.checkpoints_.clear();
}

HashChain& HashChain::operator=(HashChain&& other) noexcept {
  if (this != &other) {
    wipe();
    top_ = other.top_;
    bottom_ = other.bottom_;
    interval_ = other.interval_;
    checkpoints_ = std::move(other.checkpoints_);
    other.checkpoints_.clear();
  }
  return *this;
}

void HashChain::wipe() {
  if (!checkpoints_.empty()) sodium_memzero(checkpoints_.data(), checkpoints_.size() * sizeof(ChainKey));
}

HashChain HashChain::generate(uint64_t length) {
  ensure_sodium();
  ChainKey seed;
  randombytes_buf(seed.data(), seed.size());
  HashChain chain(seed, length);
  sodium_memzero(seed.data(), seed.size());
  return chain;
}

ChainKey HashChain::key(uint64_t index) const {
  if (!holds(index)) throw std::out_of_range("hash chain: key not held");
  uint64_t offset = index - bottom_;
  uint64_t c = (offset + interval_ - 1) / interval_;
  uint64_t position = std::min(bottom_ + c * interval_, top_);
  return chain_hash_down(checkpoints_[static_cast<size_t>(c)], position - index);
}

std::vector<ChainKey> HashChain::keys(uint64_t first, uint64_t last) const {
  if (!holds(first) || !holds(last) || first > last) throw std::out_of_range("hash chain: keys not held");
  std::vector<ChainKey> out(static_cast<size_t>(last - first + 1));
  ChainKey current = key(last);
  for (uint64_t index = last;; --index) {
    out[static_cast<size_t>(index - first)] = current;
    if (index == first) break;
    current = chain_step(current);
  }
  sodium_memzero(current.data(), current.size());
  return out;
}

const char* chain_check_name(ChainCheck check) {
  switch (check) {
    case ChainCheck::valid:
      return "valid";
    case ChainCheck::older:
      return "older";
    case ChainCheck::too_far:
      return "too_far";
    case ChainCheck::forged:
      return "forged";
  }
  return "unknown";
}

ChainCheck verify_chain_key(const ChainKey& candidate, uint64_t candidate_index, const ChainKey& trusted,
                            uint64_t trusted_index, uint64_t max_steps) {
  if (candidate_index < trusted_index) return ChainCheck::older;
  uint64_t steps = candidate_index - trusted_index;
  if (steps > max_steps) return ChainCheck::too_far;
  ChainKey down = chain_hash_down(candidate, steps);
  bool same = sodium_memcmp(down.data(), trusted.data(), down.size()) == 0;
  return same ? ChainCheck::valid : ChainCheck::forged;
}

}  // namespace roam::crypto
