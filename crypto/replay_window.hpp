// ReplayWindow: accepts each message counter at most once, and refuses counters too far
// behind the highest seen (a sliding bitmap, as in RFC 6479 and WireGuard's replay filter).
// Check only AFTER the message authenticated (the wireguard-go order): an unauthenticated
// counter must not move the window. Any thread, not shared.
#pragma once

#include <array>
#include <cstdint>

namespace roam::crypto {

class ReplayWindow {
 public:
  // Counters up to this far behind the highest are still accepted once. The bitmap has
  // one more word than that (RFC 6479): the word being filled never aliases the oldest.
  static constexpr uint64_t window_bits = 2048 - 64;

  // True, and remembered, when `counter` was never accepted and is not older than the
  // window; false otherwise (replayed or stale). Nothing changes on false.
  bool accept(uint64_t counter) {
    if (counter > highest_ || !any_) {
      advance_to(counter);
      set(counter);
      return true;
    }
    if (highest_ - counter >= window_bits) return false;  // stale
    if (test(counter)) return false;                      // replayed
    set(counter);
    return true;
  }
  uint64_t highest() const { return highest_; }

 private:
  static constexpr uint64_t word_bits = 64;
  static constexpr uint64_t words = window_bits / word_bits + 1;

  void advance_to(uint64_t counter) {
    if (any_) {
      uint64_t old_word = highest_ / word_bits;
      uint64_t new_word = counter / word_bits;
      // Clear the words the window slides over (all of them after a long jump).
      for (uint64_t w = old_word + 1; w <= new_word && w - old_word <= words; ++w) bits_[w % words] = 0;
    }
    any_ = true;
    highest_ = counter;
  }
  bool test(uint64_t counter) const { return (bits_[(counter / word_bits) % words] >> (counter % word_bits)) & 1; }
  void set(uint64_t counter) { bits_[(counter / word_bits) % words] |= uint64_t{1} << (counter % word_bits); }

  std::array<uint64_t, words> bits_{};
  uint64_t highest_ = 0;
  bool any_ = false;
};

}  // namespace roam::crypto
