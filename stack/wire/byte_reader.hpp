// ByteReader: a bounds-checked big-endian reader over untrusted bytes, for the pure
// decoders (snapshots, app states). A read past the end returns zeros or an empty span,
// never touches memory outside the input, and marks the reader failed, so a run of fixed
// fields can be read and checked once. Any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace roam::wire {

class ByteReader {
 public:
  explicit ByteReader(std::span<const uint8_t> bytes) : bytes_(bytes) {}

  bool failed() const { return failed_; }
  size_t remaining() const { return bytes_.size() - offset_; }

  std::span<const uint8_t> take(size_t n) {
    if (failed_ || n > remaining()) {
      failed_ = true;
      return {};
    }
    const auto out = bytes_.subspan(offset_, n);
    offset_ += n;
    return out;
  }
  uint8_t u8() {
    const auto b = take(1);
    return b.empty() ? uint8_t{0} : b[0];
  }
  uint16_t u16() {
    const auto b = take(2);
    return b.empty() ? uint16_t{0} : static_cast<uint16_t>((b[0] << 8) | b[1]);
  }
  uint32_t u32() {
    const auto b = take(4);
    if (b.empty()) return 0;
    return (uint32_t{b[0]} << 24) | (uint32_t{b[1]} << 16) | (uint32_t{b[2]} << 8) | uint32_t{b[3]};
  }
  uint64_t u64() {
    const uint64_t high = u32();
    return (high << 32) | u32();
  }
  int16_t i16() { return static_cast<int16_t>(u16()); }
  std::string text(size_t n) {
    const auto b = take(n);
    return std::string(b.begin(), b.end());
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t offset_ = 0;
  bool failed_ = false;
};

}  // namespace roam::wire
