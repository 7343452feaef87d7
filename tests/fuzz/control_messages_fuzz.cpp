// libFuzzer target for the messages that reach a node's control paths from the network:
// control frames (FrameReader, fed in pieces), session and session-result payloads, and
// the files app's state and request line. None may crash; whatever decodes must encode
// back to a form that decodes the same.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "apps/files_state.hpp"
#include "stack/migrate/control_frame.hpp"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

void fuzz_frames(std::span<const uint8_t> bytes) {
  roam::migrate::FrameReader reader;
  // Split the input at a data-dependent point: frames must survive any segmentation.
  size_t cut = bytes.empty() ? 0 : bytes[0] % (bytes.size() + 1);
  reader.feed(bytes.first(cut));
  for (int round = 0; round < 2; ++round) {
    while (true) {
      auto frame = reader.next();
      if (!frame || !frame.value()) break;
      const auto& f = *frame.value();
      if (auto payload = roam::migrate::decode_session_payload(f.payload)) {
        auto again = roam::migrate::encode_session_payload(*payload);
        check(again == f.payload);
      }
      if (auto result = roam::migrate::decode_session_result(f.payload)) {
        check(roam::migrate::encode_session_result(result->ok, result->text) == f.payload);
      }
    }
    reader.feed(bytes.subspan(cut));
  }
}

void fuzz_files(std::span<const uint8_t> bytes) {
  auto state = roam::decode_files_state(bytes);
  if (state) {
    auto again = roam::encode_files_state(*state);
    auto decoded = roam::decode_files_state(again);
    check(decoded.has_value());
    check(roam::encode_files_state(*decoded) == again);
  }
  std::string_view text(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  (void)roam::parse_files_request(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  fuzz_frames(bytes);
  fuzz_files(bytes);
  return 0;
}
