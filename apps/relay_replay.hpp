// The relay's side of proxy session recovery (PROTOCOL.md 14.8.3, 14.8.4), pure parts:
// the replay buffer that keeps the last bytes a relayed connection read from its service,
// the RELAY_RESUME / RELAY_RESUMED encodings a next proxy and the relay exchange on a new
// origin leg, and the relay's decision on a RELAY_RESUME. No I/O, no lwIP; a buffer
// belongs to one relayed connection on the loop thread, the functions run on any thread.
//
// RELAY_RESUME (29 bytes, big-endian): "RSRR" | u8 version 1 | u64 relayed connection id
//   | u64 down offset D (the first byte to send) | u64 up offset U (of the byte after it)
// RELAY_RESUMED (15 bytes): "RSRA" | u8 version 1 | u8 status (0 resumed, 1 refused)
//   | u8 reason (0 iff resumed) | u64 skip (up bytes the relay already had; 0 if refused)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "apps/proxy_resume_state.hpp"
#include "base/result.hpp"
#include "stack/pcb_owner.hpp"

namespace roam::relay {

inline constexpr uint8_t resume_version = 1;
inline constexpr size_t resume_request_bytes = 29;
inline constexpr size_t resume_answer_bytes = 15;
// The relay drops at most this many up bytes it already had (a larger gap is not a view
// of the same connection).
inline constexpr uint64_t max_skip = uint64_t{1} << 30;

// A RELAY_RESUME carries the proxy's resume state as it is: relayed id, D (down), U (up),
// read and written by the state's own field helpers, with its bound on offsets
// (max_stream_offset, PROTOCOL.md 14.8.2).
using ResumeRequest = ProxyResumeState;

// The reason byte of RELAY_RESUMED (PROTOCOL.md 14.8.4), in the order the relay checks.
enum class ResumeReason : uint8_t {
  none = 0,
  bad_magic = 1,
  unknown_version = 2,
  bad_field = 3,
  unknown_connection = 4,
  not_owner = 5,
  replay_gone = 6,
  ahead = 7,
  upstream_gap = 8,
};
inline constexpr uint8_t max_resume_reason = 8;
const char* resume_reason_name(ResumeReason reason);

struct ResumeAnswer {
  ResumeReason reason = ResumeReason::none;  // none: resumed
  uint64_t skip = 0;
  bool resumed() const { return reason == ResumeReason::none; }
  bool operator==(const ResumeAnswer&) const = default;
};

// The request must be valid (id non-zero, offsets below max_stream_offset). resume_request_bytes long.
std::vector<uint8_t> encode_resume_request(const ResumeRequest& request);
// The first resume_request_bytes of a new carrier: bad_magic, unknown_version or
// bad_field (id 0, an offset at or above max_stream_offset) when they are not a request.
Result<ResumeRequest, ResumeReason> decode_resume_request(std::span<const uint8_t, resume_request_bytes> bytes);

// resume_answer_bytes long.
std::vector<uint8_t> encode_resume_answer(const ResumeAnswer& answer);
// The proxy's check of the relay's first bytes: anything but a well-formed answer (magic,
// version, status 0 with reason 0, or status 1 with a known reason and skip 0, skip below
// max_skip) is malformed.
enum class AnswerError : uint8_t { bad_magic, unknown_version, malformed };
Result<ResumeAnswer, AnswerError> decode_resume_answer(std::span<const uint8_t, resume_answer_bytes> bytes);

// The last `capacity` bytes a relayed connection read from its service, by down offset:
// [base(), taken()). Stored in blocks, so memory follows what is held, not the capacity.
class ReplayBuffer {
 public:
  explicit ReplayBuffer(size_t capacity) : capacity_(capacity) {}
  // Bytes read from the service, in order: taken() grows by their size, and the oldest
  // bytes beyond the capacity go (base() grows).
  void append(std::span<const uint8_t> bytes);
  uint64_t base() const { return taken_ - size_; }
  uint64_t taken() const { return taken_; }
  size_t size() const { return size_; }
  size_t capacity() const { return capacity_; }
  // A copy of [from, taken()); nullopt when `from` is below base() or above taken().
  std::optional<std::vector<uint8_t>> copy_from(uint64_t from) const;

 private:
  static constexpr size_t block_bytes = 64 * 1024;
  size_t capacity_;
  std::deque<std::vector<uint8_t>> blocks_;  // each at most block_bytes; the last may be partly full
  size_t front_skip_ = 0;                    // bytes of blocks_.front() already gone
  size_t size_ = 0;
  uint64_t taken_ = 0;
};

// What the relay knows of one relayed connection when a RELAY_RESUME names it.
struct RelayedView {
  uint64_t base = 0;      // the replay buffer's oldest byte
  uint64_t taken = 0;     // bytes read from the service
  uint64_t received = 0;  // up bytes taken from the carrier(s) and handed to the service
  bool owner_allowed = false;  // the new carrier's owner may take it over (resume_owner_allowed)
};

// The relay's decision on a decoded request (PROTOCOL.md 14.8.4, steps 2-5): `relayed`
// is nullptr when no relayed connection has that id. Changes nothing.
ResumeAnswer decide_resume(const ResumeRequest& request, const RelayedView* relayed);

// Step 3: the new carrier's proven owner is the old carrier's, or both proved membership
// of the same pool (`pool_of`: the pool a key proved in its HELLO, if any). A carrier
// without a proven owner, on either side, may not.
using PoolKey = std::array<uint8_t, 32>;
bool resume_owner_allowed(const std::optional<OwnerKey>& old_owner, const std::optional<OwnerKey>& new_owner,
                          const std::function<std::optional<PoolKey>(const OwnerKey&)>& pool_of);

}  // namespace roam::relay
