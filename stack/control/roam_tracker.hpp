// The client's side of proactive roaming (seed 002 section IV-A): applies the ROAM_UPDATE
// messages its pool members send over authenticated channels and answers "which server
// is active now" until the epoch of its newest key, E_t. Pure (time passed in, Unix ms);
// one thread (the client's loop).
//
// Every check runs before any state changes (an update is applied whole or not at all),
// and each refusal is counted:
//   replayed      issued_at not after the last applied update's
//   stale         issued more than max_age_ms from the client's clock either way; or a
//                 key below the one held; or a current epoch r below the one known
//   forged        K_t does not hash down to the key held (or to the configured trust)
//   too_far       K_t more than max_key_steps above the key held, or a chain of more
//                 than max_held_epochs to keep: refused without hashing it all
//   inconsistent  j or r above t, |j - r| > max_position_gap, l not after r, a position
//                 or schedule without a pool item ever seen
// A client that missed updates catches up: any newer K_t verifies to the older key it
// holds by hashing (at most max_key_steps). With no configured trust, the first key from
// an authenticated pool member becomes the trusted one.
#pragma once

#include <cstdint>
#include <optional>

#include "crypto/roam_schedule.hpp"
#include "stack/control/roam_update.hpp"

namespace roam::control {

struct RoamTrackerLimits {
  int64_t max_age_ms = 60'000;
  uint64_t max_key_steps = uint64_t{1} << 22;
  uint64_t max_held_epochs = uint64_t{1} << 21;
  uint32_t max_position_gap = 4096;
};

enum class RoamVerdict : uint8_t { applied, replayed, stale, forged, too_far, inconsistent };
const char* roam_verdict_name(RoamVerdict verdict);

struct RoamTrackerCounters {
  uint64_t applied = 0;
  uint64_t replayed = 0;
  uint64_t stale = 0;
  uint64_t forged = 0;
  uint64_t too_far = 0;
  uint64_t inconsistent = 0;
  uint64_t keys_extended = 0;  // applied updates whose key moved t up
};

struct TrustedChainKey {
  uint64_t index = 0;
  crypto::ChainKey key{};
};

class RoamTracker {
 public:
  explicit RoamTracker(std::optional<TrustedChainKey> trusted = std::nullopt, RoamTrackerLimits limits = {});

  RoamVerdict apply(const RoamUpdate& update, int64_t now_ms);

  // The active server now, when the client has a schedule covering now.
  std::optional<RoamServer> active_server(int64_t now_ms);
  std::optional<crypto::EpochWindow> window_at(int64_t now_ms);
  // The newest key index held (t): the schedule is known up to epoch t.
  std::optional<uint64_t> granted_until() const;
  // A schedule was known and now is past the end of E_t: the client must get a newer key.
  bool expired(int64_t now_ms);
  const RoamTrackerCounters& counters() const { return counters_; }
  // The pool of the first pool item applied (none before).
  const std::optional<RoamPoolItem>& pool() const { return pool_; }

 private:
  RoamVerdict refuse(RoamVerdict verdict);

  RoamTrackerLimits limits_;
  RoamTrackerCounters counters_;
  std::optional<TrustedChainKey> held_;
  std::optional<uint64_t> last_issued_ms_;
  std::optional<RoamPoolItem> pool_;
  crypto::EpochRule rule_;
  std::optional<uint64_t> current_epoch_;  // r of the last applied position
  std::optional<crypto::RoamSchedule> schedule_;
};

}  // namespace roam::control
