// Pre-copy (docs/PROTOCOL.md 4.3, "Pre-copy"): while a busy connection keeps running on the
// old server, its queued stream bytes (send queue from snd_una; received bytes its app has
// not read) go to the new server ahead of the freeze, as live VM migration copies memory
// before it stops the VM. The freeze then sends a *delta* snapshot (section 5, flag 0x0004)
// and the new server splices the bytes it holds back in, after checking the sequence ranges
// match. Pure: the precopy frame codec, the target's per-connection store, the splice and
// its inverse. No I/O, no lwIP. Loop thread only (the store is not thread-safe).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "stack/wire/connection_snapshot.hpp"

namespace roam::migrate {

// Which queued bytes of a connection a precopy frame carries.
enum class PrecopyStreamKind : uint8_t {
  send = 1,     // the send stream from snd_una: unacknowledged, then unsent
  receive = 2,  // received, acknowledged, not yet read by the app
};

// precopy frame payload: u64 connection id | u8 stream | u32 first seq | N >= 1 bytes.
inline constexpr size_t precopy_header_bytes = 13;
// Bytes per precopy frame the old server sends at most: the target buffers a frame
// whole before it takes it, and a smaller frame lets it start sooner.
inline constexpr size_t precopy_frame_bytes = 1u << 20;

struct PrecopyChunk {
  uint64_t connection_id = 0;
  PrecopyStreamKind stream = PrecopyStreamKind::send;
  uint32_t first_seq = 0;               // sequence number of bytes[0]
  std::span<const uint8_t> bytes;       // into the decoded payload
};

enum class PrecopyPayloadError : uint8_t {
  truncated,  // shorter than the 13-byte header, or no byte after it
  bad_field,  // connection id 0, a stream other than 1 or 2
};
const char* precopy_payload_error_name(PrecopyPayloadError error);

// Appends one whole precopy frame (control_frame header included) to `out`.
void append_precopy_frame(uint64_t connection_id, PrecopyStreamKind stream, uint32_t first_seq,
                          std::span<const uint8_t> bytes, std::vector<uint8_t>& out);
Result<PrecopyChunk, PrecopyPayloadError> decode_precopy_payload(std::span<const uint8_t> payload);

// The new server's answer to a precopy_sync, a `reply` frame's text: "precopied BYTES"
// (decimal, the bytes it holds for this control connection). Anything else (an "error
// ...") decodes to nullopt: a refusal.
std::string encode_precopy_sync_answer(uint64_t held_bytes);
std::optional<uint64_t> decode_precopy_sync_answer(std::string_view text);

// Bytes of one stream held since `first_seq`, contiguous.
struct PrecopiedBytes {
  uint32_t first_seq = 0;
  std::vector<uint8_t> bytes;
  uint32_t end_seq() const { return first_seq + static_cast<uint32_t>(bytes.size()); }
};

// A sequence range [first, end) of a stream (modulo 2^32).
struct SeqRange {
  uint32_t first = 0;
  uint32_t end = 0;
  uint32_t length() const { return end - first; }
};

// The target's side: what one peer (one control connection) pre-copied, per connection
// and stream. A chunk that continues a stream where it ends is appended; one that starts
// anywhere else replaces it (the sender re-anchors when its peer acknowledged past what it
// pre-copied). Memory is bounded by a budget shared by every store of a server.
class PrecopyStore {
 public:
  // `budget_in_use` counts the bytes of all stores that share `budget`.
  PrecopyStore(size_t budget, size_t& budget_in_use) : budget_(budget), in_use_(budget_in_use) {}
  ~PrecopyStore() { clear(); }
  PrecopyStore(const PrecopyStore&) = delete;
  PrecopyStore& operator=(const PrecopyStore&) = delete;

  // False when it did not fit the budget: the connection's stream is then dropped (a delta
  // that relies on it will not splice) and the store remembers a refusal until the next
  // sync. Bytes dropped by a replacement or a refusal count as discarded.
  bool take(const PrecopyChunk& chunk);
  // A chunk that did not decode: remembered as a refusal like one over the budget.
  void note_refused() { ++refused_since_sync_; }
  // The answer to a sync: the refusals since the last sync (then forgotten).
  size_t take_refusals() { return std::exchange(refused_since_sync_, 0); }
  size_t held_bytes() const { return held_; }
  // Takes a connection's stream out of the store (empty when none).
  std::optional<PrecopiedBytes> take_out(uint64_t connection_id, PrecopyStreamKind stream);
  // Drops a connection's streams; they count as discarded.
  void discard(uint64_t connection_id);
  void clear();
  // Bytes taken out that were lost after all (the session they were for was refused).
  void note_discarded(uint64_t bytes) { bytes_discarded_ += bytes; }
  // Bytes received, and bytes dropped unused (replaced, refused, discarded, cleared).
  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t bytes_discarded() const { return bytes_discarded_; }

 private:
  using Key = std::pair<uint64_t, uint8_t>;
  void drop(std::map<Key, PrecopiedBytes>::iterator it);
  size_t budget_;
  size_t& in_use_;
  size_t held_ = 0;
  size_t refused_since_sync_ = 0;
  uint64_t bytes_received_ = 0;
  uint64_t bytes_discarded_ = 0;
  std::map<Key, PrecopiedBytes> streams_;
};

// The old server's side: which range of each stream the target will hold once the frames
// sent so far arrive, mirroring PrecopyStore's rules. Each round asks what to send.
class PrecopyLedger {
 public:
  // `queued` are the stream's bytes queued now. Returns where to send from: the end of what
  // the target holds (a continuation), or queued.first (a new anchor, replacing it); the
  // caller sends [returned, queued.end) in order. Nothing to send: queued.end.
  uint32_t plan(uint64_t connection_id, PrecopyStreamKind stream, SeqRange queued);
  std::optional<SeqRange> held(uint64_t connection_id, PrecopyStreamKind stream) const;
  // What the target holds when it took every frame: its sync answer must say the same.
  uint64_t held_bytes() const { return held_bytes_; }
  void clear() {
    ranges_.clear();
    held_bytes_ = 0;
  }

 private:
  std::map<std::pair<uint64_t, uint8_t>, SeqRange> ranges_;
  uint64_t held_bytes_ = 0;
};

// The target's splice: a delta snapshot (its `precopied` set) made whole again from the
// bytes held, which must cover exactly the ranges it names; on success `precopied` is
// cleared and the snapshot validates as a full one. On error the snapshot is unchanged
// and the held bytes are not consumed.
Result<Ok, std::string> splice_precopied(wire::ConnectionSnapshot& snapshot, std::optional<PrecopiedBytes>& send,
                                         std::optional<PrecopiedBytes>& receive);

// The old server's inverse, at the freeze: `snapshot` is whole; `send` / `receive` are
// the ranges the target holds for this connection (as its sync confirmed). Leaves out the
// part of each range the snapshot still carries (bytes the peer acknowledged, or the app
// read, since are simply skipped) and sets `precopied`; returns the bytes left out.
// Received bytes are left out only of an ESTABLISHED connection (their end is rcv_nxt).
size_t omit_precopied(wire::ConnectionSnapshot& snapshot, const std::optional<SeqRange>& send,
                      const std::optional<SeqRange>& receive);

}  // namespace roam::migrate
