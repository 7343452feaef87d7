// libFuzzer target for the control channel's message decoder (stack/control/messages):
// never crashes; whatever decodes re-encodes to the same bytes.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "stack/control/messages.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto decoded = roam::control::decode_message(std::span<const uint8_t>(data, size));
  if (decoded) {
    auto again = roam::control::encode_message(decoded.value());
    if (again != std::vector<uint8_t>(data, data + size)) __builtin_trap();
  }
  return 0;
}
