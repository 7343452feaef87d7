// Client-held session checkpoints (seed 002 section IV, "checkpoints"; PROTOCOL.md 14):
// the active server seals the state of one movable connection (TCP state and the app's
// own state) under a key only pool members hold, and hands it to the client over its
// control channel. If that server dies without exporting, the client presents its latest
// checkpoint to the next server, which opens it and rebuilds the connection. Pure
// encode/seal/open functions plus the ledger of generations a server already resumed
// from; no I/O, no clock (the time is passed in). Any thread; a ledger belongs to one loop.
//
// Sealed layout (big-endian), version 1:
//   0  4  magic "RSCK"
//   4  u8 version = 1
//   5  u64 connection id (non-zero)
//   13 32 the owning client's static channel key (Noise public key)
//   45 u64 generation (>= 1; grows with every checkpoint of that connection)
//   53 24 nonce (random)
//   77    ciphertext = XChaCha20-Poly1305-IETF(key, nonce, plaintext, ad = bytes 0..53)
//         plaintext: u64 created_at_ms (Unix) | ConnectionSnapshot encoding (PROTOCOL.md 5)
// The header is readable (a client keeps the highest generation per connection) but bound
// by the AEAD: a client can neither read the state nor change a byte of header or body.
// Inside, the snapshot's connection id must equal the header's, and its owner section,
// when present, the header's client key.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <span>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "crypto/hash_chain.hpp"
#include "crypto/sodium.hpp"
#include "stack/wire/connection_snapshot.hpp"

namespace roam::migrate {

inline constexpr uint8_t checkpoint_version = 1;
inline constexpr size_t checkpoint_key_bytes = 32;
inline constexpr size_t checkpoint_client_key_bytes = 32;
inline constexpr size_t checkpoint_nonce_bytes = 24;
inline constexpr size_t checkpoint_tag_bytes = 16;
inline constexpr size_t checkpoint_header_bytes = 53;  // the associated data
inline constexpr size_t checkpoint_overhead = checkpoint_header_bytes + checkpoint_nonce_bytes + checkpoint_tag_bytes;
// A checkpoint travels in one channel message (at most 65535 bytes with its type and
// length): the state-only snapshot and the app state fit easily; queued bytes do not belong.
inline constexpr size_t max_sealed_checkpoint = 60000;

using CheckpointClientKey = std::array<uint8_t, checkpoint_client_key_bytes>;

// The pool's checkpoint key: BLAKE2b-256("roamstack checkpoint v1" | S), S = a 32-byte secret
// every server of the pool holds and no client (roam-server --checkpoint-seed; PROTOCOL.md
// 14.1 says why the chain's own K_n is a poor choice near the chain's end). One label per
// purpose: this key says nothing about the schedule's hashes.
class CheckpointKey {
 public:
  static CheckpointKey derive(const crypto::ChainKey& pool_seed);
  const uint8_t* data() const { return key_.data(); }

 private:
  CheckpointKey() = default;
  crypto::SecretBytes<checkpoint_key_bytes> key_;
};

struct CheckpointHeader {
  uint64_t connection_id = 0;
  CheckpointClientKey client_key{};
  uint64_t generation = 0;
  bool operator==(const CheckpointHeader&) const = default;
};

struct Checkpoint {
  CheckpointHeader header;
  uint64_t created_at_ms = 0;
  wire::ConnectionSnapshot snapshot;  // its connection id = header.connection_id
};

enum class CheckpointError : uint8_t {
  truncated,         // shorter than header, nonce and tag
  bad_magic,         // not a checkpoint
  unknown_version,
  bad_field,         // connection id 0 or generation 0 in the header
  oversized,         // above max_sealed_checkpoint (or the plaintext would be)
  forged,            // the AEAD refused: wrong key, or any byte changed
  wrong_client,      // sealed for another client than the channel presenting it
  wrong_connection,  // sealed for another connection than the one named
  malformed,         // authentic, but the inside does not decode or disagrees with the header
  replayed,          // the generation this server already resumed from
  stale,             // older than a generation this server already resumed from
  expired,           // created longer ago than the age limit (or too far in the future)
};
const char* checkpoint_error_name(CheckpointError error);
inline constexpr size_t checkpoint_error_count = static_cast<size_t>(CheckpointError::expired) + 1;

// Reads the header without authenticating it: only for a client deciding which
// checkpoint is its latest. A server acts on nothing before open_checkpoint.
Result<CheckpointHeader, CheckpointError> peek_checkpoint_header(std::span<const uint8_t> sealed);

// Seals with a random nonce. The checkpoint's snapshot must be valid, its connection id
// the header's, and the header's connection id and generation non-zero.
Result<std::vector<uint8_t>, CheckpointError> seal_checkpoint(const CheckpointKey& key, const Checkpoint& checkpoint);
// The same with a given nonce (test vectors only: a nonce must never repeat under a key).
Result<std::vector<uint8_t>, CheckpointError> seal_checkpoint(const CheckpointKey& key, const Checkpoint& checkpoint,
                                                              std::span<const uint8_t, checkpoint_nonce_bytes> nonce);

struct OpenLimits {
  uint64_t now_ms = 0;
  uint64_t max_age_ms = 0;         // 0: no age limit
  uint64_t max_future_ms = 60000;  // a created_at further ahead than this is refused (clock skew)
};

// Opens a checkpoint presented by the client whose channel key is `client` for connection
// `connection_id`. Checks in this order, changing nothing: shape, header against the
// presenter, AEAD, the inside against the header, the age. The generation is the
// ledger's business (CheckpointLedger::check).
Result<Checkpoint, CheckpointError> open_checkpoint(const CheckpointKey& key, std::span<const uint8_t> sealed,
                                                    const CheckpointClientKey& client, uint64_t connection_id,
                                                    const OpenLimits& limits);

// The generations one server resumed from, per (client, connection): an opened checkpoint
// of a generation at or below one already used is refused, so a client cannot rewind a
// session it already resumed. (Per server: PROTOCOL.md 14 says what this leaves open.)
class CheckpointLedger {
 public:
  explicit CheckpointLedger(size_t capacity = 65536) : capacity_(capacity) {}
  // replayed (same generation), stale (older) or ok. Changes nothing.
  Result<Ok, CheckpointError> check(const CheckpointHeader& header) const;
  // Records a successful resume. At capacity the entry with the lowest generation goes.
  void record(const CheckpointHeader& header);
  size_t size() const { return generations_.size(); }

 private:
  size_t capacity_;
  std::map<std::pair<CheckpointClientKey, uint64_t>, uint64_t> generations_;
};

// Refusals by reason (shown by `roamctl status` where a server keeps them).
struct CheckpointCounters {
  std::array<uint64_t, checkpoint_error_count> refused{};
  void count(CheckpointError error) { ++refused[static_cast<size_t>(error)]; }
  uint64_t refused_total() const;
};

}  // namespace roam::migrate
