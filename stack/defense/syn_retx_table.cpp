#include "stack/defense/syn_retx_table.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstring>

namespace roam::defense {

static_assert(syn_retx_key_bytes == crypto_shorthash_KEYBYTES);

std::optional<uint64_t> syn_record_hash(std::span<const uint8_t, syn_retx_key_bytes> key, const CookieFlow& flow,
                                        uint32_t client_isn) {
  if (flow.version != 4 && flow.version != 6) return std::nullopt;
  std::array<uint8_t, syn_hash_prefix_bytes> input{};
  put_syn_hash_prefix(input, flow, client_isn);
  std::array<uint8_t, crypto_shorthash_BYTES> hash{};
  crypto_shorthash(hash.data(), input.data(), input.size(), key.data());
  uint64_t out = 0;
  for (uint8_t b : hash) out = (out << 8) | b;  // big-endian, as the cookie reads its MAC
  return out;
}

SynRetxTable::SynRetxTable(SynRetxTableConfig config) : config_(config) {
  randombytes_buf(key_.data(), key_.size());
  const size_t bits = std::clamp<size_t>(config_.bits, 64, size_t{1} << 32);
  config_.bits = std::bit_ceil(bits);
  config_.generation_ms = std::max<uint64_t>(config_.generation_ms, 1);
  words_per_generation_ = config_.bits / 64;
}

SynRetxTable::SynRetxTable(SynRetxTableConfig config, std::span<const uint8_t, syn_retx_key_bytes> key)
    : SynRetxTable(config) {
  std::copy(key.begin(), key.end(), key_.data());
}

void SynRetxTable::clear(size_t generation) {
  if (records_[generation] == 0) return;  // nothing set: skip the pass over an idle table
  for (size_t w = generation; w < 2 * words_per_generation_; w += 2) words_[w] = 0;
  records_[generation] = 0;
}

bool SynRetxTable::allocate() {
  constexpr size_t huge_page = size_t{2} << 20;
  const size_t bytes = 2 * words_per_generation_ * sizeof(uint64_t);  // a power of two
  const size_t alignment = std::min(bytes, huge_page);
  words_.reset(static_cast<uint64_t*>(std::aligned_alloc(alignment, bytes)));
  if (!words_) return false;  // no exception: this runs inside the link's read callback
  // Before the first touch, so the pages come as huge ones (THP "madvise" mode); advice
  // only: without it the table works the same, slower.
  if (bytes >= huge_page) madvise(words_.get(), bytes, MADV_HUGEPAGE);
  std::memset(words_.get(), 0, bytes);
  return true;
}

void SynRetxTable::advance(uint64_t now_ms) {
  if (!started_) {
    started_ = true;
    generation_start_ms_ = now_ms;
    return;
  }
  if (now_ms < generation_start_ms_) return;  // time going back rotates nothing
  const uint64_t elapsed = now_ms - generation_start_ms_;
  if (elapsed < config_.generation_ms) return;
  if (elapsed >= 2 * config_.generation_ms) {
    // Both generations are older than any record may live.
    clear(0);
    clear(1);
    generation_start_ms_ = now_ms;
    return;
  }
  // The older generation goes; its records lived at least one generation.
  current_ ^= 1;
  clear(current_);
  generation_start_ms_ += config_.generation_ms;
}

// A record is two bits of one 64-bit word (a blocked Bloom filter), and the two
// generations' words sit side by side: a lookup in both reads one cache line. The
// table is megabytes and each SYN hits it at random, so an unblocked filter's four
// cache and TLB misses per SYN were 11 % of the loop thread's time under a flood.
size_t SynRetxTable::word_of(uint64_t hash) const {
  return 2 * static_cast<size_t>(hash & (words_per_generation_ - 1));
}

uint64_t SynRetxTable::bits_of(uint64_t hash) {
  return (uint64_t{1} << ((hash >> 32) & 63)) | (uint64_t{1} << ((hash >> 38) & 63));
}

bool SynRetxTable::test(size_t generation, uint64_t hash) const {
  const uint64_t bits = bits_of(hash);
  return (words_[word_of(hash) + generation] & bits) == bits;
}

void SynRetxTable::set(size_t generation, uint64_t hash) {
  words_[word_of(hash) + generation] |= bits_of(hash);
  ++records_[generation];
}

void SynRetxTable::prefetch(const CookieFlow& flow, uint32_t client_isn) const {
  if (!words_) return;
  const auto hash = syn_record_hash(key_.span(), flow, client_isn);
  if (hash) __builtin_prefetch(&words_[word_of(*hash)], 1);  // 1: it will be written (recorded)
}

bool SynRetxTable::seen(const CookieFlow& flow, uint32_t client_isn, uint64_t now_ms) {
  const auto hash = syn_record_hash(key_.span(), flow, client_isn);
  if (!hash || !words_) return false;  // nothing recorded yet: nothing to allocate for
  advance(now_ms);
  return test(0, *hash) || test(1, *hash);
}

bool SynRetxTable::seen_then_record(const CookieFlow& flow, uint32_t client_isn, uint64_t now_ms) {
  const auto hash = syn_record_hash(key_.span(), flow, client_isn);
  if (!hash) return false;
  // Out of memory: every SYN counts as a retransmission (answered as without the check).
  if (!words_ && !allocate()) return true;
  advance(now_ms);
  const bool found = test(0, *hash) || test(1, *hash);
  set(current_, *hash);
  return found;
}

}  // namespace roam::defense
