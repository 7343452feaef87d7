// libFuzzer target for stack/wire/connection_snapshot: decode_snapshot on arbitrary bytes
// (with and without the optional segment-MAC section; seeds *_segment_mac).
// Run: fuzz_connection_snapshot tests/fuzz/corpus/connection_snapshot (Clang only, see CMakeLists.txt).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "stack/wire/connection_snapshot.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> bytes(data, size);
  const auto decoded = roam::wire::decode_snapshot(bytes);
  if (!decoded) {
    if (roam::wire::snapshot_error_name(decoded.error())[0] == '\0') __builtin_trap();
    return 0;
  }
  // Decode enforces validate_snapshot, so what it accepts is valid.
  if (!roam::wire::validate_snapshot(*decoded)) __builtin_trap();
  // A segment-MAC section is only accepted for the connection it names (flag 0x0001).
  if (decoded->segment_mac && (decoded->segment_mac->connection_id != decoded->connection_id ||
                               (size < 12 || (data[7] & 0x01) == 0)))
    __builtin_trap();
  // The encoding is canonical: an accepted input is the encoding of what it decodes to,
  // and that encoding decodes again to a snapshot that encodes the same.
  const std::vector<uint8_t> encoded = roam::wire::encode_snapshot(*decoded);
  if (encoded.size() != size || !std::equal(encoded.begin(), encoded.end(), bytes.begin())) __builtin_trap();
  const auto again = roam::wire::decode_snapshot(encoded);
  if (!again) __builtin_trap();
  if (roam::wire::encode_snapshot(*again) != encoded) __builtin_trap();
  return 0;
}
