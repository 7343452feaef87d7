// SynRetxTable: which SYNs were seen recently, so that a flooded listener answers a SYN
// only on its retransmission (issue 13, "first-SYN drop", as DDoS scrubbers do). Real
// TCP stacks resend a SYN with the same 4-tuple and the same ISN (RFC 9293 3.8.1:
// only the timer changes); a spoofed flood sends each (source, port, ISN) once, so
// none of its SYNs finds its record and none is answered.
//
// Two generations of a bit array (a blocked Bloom filter: two bits of one 64-bit word per
// SYN), indexed by SipHash-2-4 (crypto_shorthash) under a per-process random key over
//   u8 IP version | local address (16) | remote address (16) | u16 local port
//   | u16 remote port | u32 client ISN                        (big-endian, as the cookie)
// so a flood cannot aim its SYNs at the bits a client's SYN sets. New SYNs set their bits
// in the current generation; a lookup checks both (their words are adjacent: one cache
// line). Every `generation_ms` the older generation is cleared and becomes the current
// one, so a record lives between one and two generations (the default 3 s covers Linux's
// 1 s and 2 s gaps between SYNs). No false negatives within a generation; false
// positives (a fresh SYN taken for a retransmission, and answered) when both its bits
// are set: f ~ (1 - e^(-2n/m))^2 per generation of n SYNs in m bits (a little more for
// the blocking), at most 2f for a lookup in both: 0.75 % at 280k SYN/s (3 s per
// generation, the default 2^25 bits), 6 % at 1M. Bounded memory (2 x m / 8 bytes, taken
// on first use), O(1), no allocation per SYN. Fed the time; reads no clock. Loop thread
// only.
#pragma once

#include <cstddef>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <span>

#include "crypto/sodium.hpp"
#include "stack/defense/syn_cookie.hpp"

namespace roam::defense {

inline constexpr size_t syn_retx_key_bytes = 16;  // crypto_shorthash_KEYBYTES

struct SynRetxTableConfig {
  size_t bits = size_t{1} << 25;  // per generation, rounded up to a power of two (64 .. 2^32)
  uint64_t generation_ms = 3000;
};

// The 64-bit keyed hash a SYN's record is made of (pure; the table's bit indexes are its
// two halves). nullopt for a flow of an IP version other than 4 or 6.
std::optional<uint64_t> syn_record_hash(std::span<const uint8_t, syn_retx_key_bytes> key, const CookieFlow& flow,
                                        uint32_t client_isn);

class SynRetxTable {
 public:
  explicit SynRetxTable(SynRetxTableConfig config = {});
  // Tests: a fixed key instead of a random one.
  SynRetxTable(SynRetxTableConfig config, std::span<const uint8_t, syn_retx_key_bytes> key);

  // Whether this SYN (flow and client ISN) was recorded within the last one to two
  // generations, and records it now (in the current generation: a third copy still finds
  // it). A flow of another IP version than 4 or 6 changes nothing and is "not seen".
  bool seen_then_record(const CookieFlow& flow, uint32_t client_isn, uint64_t now_ms);
  // Starts loading the word this SYN's record lives in, so that seen_then_record for it a
  // little later (the same busy batch) finds it in the cache: the table is megabytes and
  // each SYN hits it at random. No effect on the table's state; nothing before the table
  // exists (first record).
  void prefetch(const CookieFlow& flow, uint32_t client_isn) const;
  // The same lookup without recording (tests, status).
  bool seen(const CookieFlow& flow, uint32_t client_isn, uint64_t now_ms);

  const SynRetxTableConfig& config() const { return config_; }
  // Bytes of bit array held (0 until the first record).
  size_t memory_bytes() const { return words_ ? 2 * words_per_generation_ * sizeof(uint64_t) : 0; }
  // SYNs recorded in the current generation (duplicates counted again).
  uint64_t current_records() const { return records_[current_]; }

 private:
  bool allocate();  // false: out of memory
  // Rotates the generations up to now_ms; allocates on first use.
  void advance(uint64_t now_ms);
  void clear(size_t generation);
  size_t word_of(uint64_t hash) const;  // generation 0's word; generation 1's follows it
  static uint64_t bits_of(uint64_t hash);
  bool test(size_t generation, uint64_t hash) const;
  void set(size_t generation, uint64_t hash);

  SynRetxTableConfig config_;
  crypto::SecretBytes<syn_retx_key_bytes> key_;
  struct FreeWords {
    void operator()(uint64_t* words) const { std::free(words); }
  };
  // Word w of generation g at 2 * w + g; huge pages where the kernel gives them (every
  // SYN lands on a random word: with 4 KiB pages each was a TLB miss too).
  std::unique_ptr<uint64_t[], FreeWords> words_;
  size_t words_per_generation_ = 0;
  size_t current_ = 0;
  uint64_t generation_start_ms_ = 0;
  bool started_ = false;
  std::array<uint64_t, 2> records_{};
};

}  // namespace roam::defense
