// libFuzzer target for the proxy resume messages (apps/relay_replay.hpp,
// apps/proxy_resume_state.hpp; PROTOCOL.md 14.8): a RELAY_RESUME is the first bytes a relay
// reads from a new carrier and a RELAY_RESUMED the first the proxy reads back, both from
// whoever connects; the proxy resume state and the move state arrive inside checkpoints
// and snapshots. None may crash; whatever decodes must encode back to the same bytes; the
// relay's decision for an id it does not know never resumes, and for a known connection
// never skips more than max_skip or resumes an offset beyond what it has.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "apps/proxy_resume_state.hpp"
#include "apps/relay_replay.hpp"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

uint64_t read_u64(std::span<const uint8_t> bytes, size_t at) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8 && at + i < bytes.size(); ++i) value = (value << 8) | bytes[at + i];
  return value;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace roam;
  std::span<const uint8_t> bytes(data, size);
  if (size >= relay::resume_request_bytes) {
    auto head = bytes.first<relay::resume_request_bytes>();
    if (auto request = relay::decode_resume_request(head)) {
      check(relay::encode_resume_request(*request) == std::vector<uint8_t>(head.begin(), head.end()));
      check(!relay::decide_resume(*request, nullptr).resumed());
      // A relayed connection made of the input's remaining bytes.
      relay::RelayedView view;
      view.taken = read_u64(bytes, relay::resume_request_bytes) % max_stream_offset;
      view.base = view.taken - std::min(view.taken, read_u64(bytes, relay::resume_request_bytes + 8));
      view.received = read_u64(bytes, relay::resume_request_bytes + 16) % max_stream_offset;
      view.owner_allowed = size > relay::resume_request_bytes + 24 && (bytes[relay::resume_request_bytes + 24] & 1);
      auto answer = relay::decide_resume(*request, &view);
      if (answer.resumed()) {
        check(view.owner_allowed);
        check(request->down >= view.base && request->down <= view.taken && request->up <= view.received);
        check(answer.skip <= relay::max_skip);
      }
    }
  }
  if (size >= relay::resume_answer_bytes) {
    auto head = bytes.first<relay::resume_answer_bytes>();
    if (auto answer = relay::decode_resume_answer(head))
      check(relay::encode_resume_answer(*answer) == std::vector<uint8_t>(head.begin(), head.end()));
  }
  if (auto state = decode_proxy_resume_state(bytes))
    check(encode_proxy_resume_state(*state) == std::vector<uint8_t>(bytes.begin(), bytes.end()));
  if (auto offsets = decode_proxy_move_state(bytes); offsets && offsets->has_value())
    check(encode_proxy_move_state(*offsets) == std::vector<uint8_t>(bytes.begin(), bytes.end()));
  return 0;
}
