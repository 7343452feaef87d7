// Big-endian appenders for the pure encoders (snapshots, control messages): the write
// side of ByteReader. Any thread.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace roam::wire {

inline void put_u8(std::vector<uint8_t>& out, uint8_t v) {
  out.push_back(v);
}
inline void put_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
inline void put_u32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
inline void put_u64(std::vector<uint8_t>& out, uint64_t v) {
  put_u32(out, static_cast<uint32_t>(v >> 32));
  put_u32(out, static_cast<uint32_t>(v));
}
// Sized once and filled with memcpy (GCC 12 at -O3 misreads small vector inserts).
inline void put_bytes(std::vector<uint8_t>& out, std::span<const uint8_t> bytes) {
  size_t at = out.size();
  out.resize(at + bytes.size());
  if (!bytes.empty()) std::memcpy(out.data() + at, bytes.data(), bytes.size());
}

}  // namespace roam::wire
