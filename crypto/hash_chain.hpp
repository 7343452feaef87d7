// Backward hash chain of proactive server roaming (seed 002 section IV-A): a random K_n,
// then K_{i-1} = H(K_i) down to K_0. Keys are used upward (epoch i uses K_i), so a holder
// of K_t can compute every K_i with i <= t but none above: the pool grants a client the
// schedule up to epoch t by handing it K_t, and a newer K_t' proves itself by hashing
// down to a key the client already trusts. Pure, any thread.
//
// H(x) = BLAKE2b-256("roamstack chain v1" | x) (PROTOCOL.md section 13.1). HashChain keeps
// only every s-th key, s = ceil(sqrt(range)), so K_i costs at most s - 1 hashes and the
// chain O(sqrt n) memory: 2^20 epochs need 1026 stored keys (33 KiB), not 32 MiB.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace roam::crypto {

inline constexpr size_t chain_key_bytes = 32;
using ChainKey = std::array<uint8_t, chain_key_bytes>;

// BLAKE2b-256(label | key), unkeyed, over the label's bytes (no terminator) and the key:
// the chain step and every key derived from a chain key (PROTOCOL.md 13.1, 13.2, 14.1).
// `label` is at most max_hash_label_bytes.
inline constexpr size_t max_hash_label_bytes = 64;
ChainKey labelled_hash(std::string_view label, const ChainKey& key);
// One step down the chain: K_{i-1} = H(K_i).
ChainKey chain_step(const ChainKey& key);
// `steps` steps down: K_{i-steps} from K_i.
ChainKey chain_hash_down(ChainKey key, uint64_t steps);

// Keys `bottom` .. `top` of one chain, generated from K_top (the pool's random K_n, or a
// client's newest granted K_t with bottom = its current epoch). Move-only; the stored
// keys are wiped when it dies.
class HashChain {
 public:
  static constexpr uint64_t max_range = uint64_t{1} << 32;

  // Throws std::invalid_argument when bottom > top or the range exceeds max_range.
  HashChain(const ChainKey& top_key, uint64_t top, uint64_t bottom = 0);
  ~HashChain();
  HashChain(HashChain&& other) noexcept;
  HashChain& operator=(HashChain&& other) noexcept;
  HashChain(const HashChain&) = delete;
  HashChain& operator=(const HashChain&) = delete;

  // A fresh chain with a random K_length.
  static HashChain generate(uint64_t length);

  uint64_t top() const { return top_; }
  uint64_t bottom() const { return bottom_; }
  bool holds(uint64_t index) const { return index >= bottom_ && index <= top_; }
  // K_index; index must be held (holds()). At most interval() - 1 hashes.
  ChainKey key(uint64_t index) const;
  // Keys first .. last (both held, first <= last) in ascending order: one pass down from
  // the checkpoint above `last`, so a walk through consecutive epochs costs O(1) hashes
  // per key when asked for a segment at a time.
  std::vector<ChainKey> keys(uint64_t first, uint64_t last) const;

  uint64_t interval() const { return interval_; }
  size_t stored_keys() const { return checkpoints_.size(); }

 private:
  void wipe();

  uint64_t top_ = 0;
  uint64_t bottom_ = 0;
  uint64_t interval_ = 1;
  // checkpoints_[c] = K_{min(bottom + c * interval, top)}; the last one is K_top.
  std::vector<ChainKey> checkpoints_;
};

enum class ChainCheck : uint8_t {
  valid,     // candidate hashes down to the trusted key
  older,     // candidate index below the trusted one: nothing new
  too_far,   // more than max_steps hashes apart: refused unhashed (bounded work)
  forged,    // hashes to something else
};
const char* chain_check_name(ChainCheck check);

// Does `candidate` (claimed K_candidate_index) hash down to `trusted` (K_trusted_index)?
// Costs candidate_index - trusted_index hashes, never more than max_steps. Constant-time
// final comparison. Equal indices: valid iff the keys are equal.
ChainCheck verify_chain_key(const ChainKey& candidate, uint64_t candidate_index, const ChainKey& trusted,
                            uint64_t trusted_index, uint64_t max_steps);

}  // namespace roam::crypto
