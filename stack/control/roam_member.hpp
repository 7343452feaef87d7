// One pool member's side of proactive roaming (seed 002 section IV): from the pool's hash
// chain it knows, at any time, whether it is the active server (exactly one member per
// epoch), whether it accepts traffic (active, or within the transitional interval
// delta + gamma around a boundary, IV-C), and it builds the ROAM_UPDATE messages it
// sends its authenticated clients. A member that does not accept drops everything except
// pool traffic; admit() is that decision plus its counter. Pure (time passed in, Unix
// ms); one thread (the server's loop). The answer is cached until the next point where
// it can change, so a per-packet admit() costs a comparison.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "crypto/roam_schedule.hpp"
#include "stack/control/roam_update.hpp"

namespace roam::control {

struct RoamMemberConfig {
  std::vector<RoamServer> servers;  // the pool's servers[], the same order on every member
  uint32_t self = 0;                // this member's index in servers
  uint32_t unit_ms = 1000;          // epoch unit (--roam-epoch)
  uint8_t m = 0;                    // epochs last unit * (1 + MSB_m(H'(K_i)))
  int64_t start_ms = 0;             // Unix ms at which epoch 1 starts
  int64_t delta_ms = 0;             // clock skew bound between members
  int64_t gamma_ms = 0;             // network delay bound
  uint32_t grant_epochs = 3600;     // a client update grants K_{r + grant_epochs}
};

struct RoamMemberCounters {
  uint64_t admitted = 0;
  uint64_t dropped_inactive = 0;
  uint64_t epoch_changes = 0;  // boundaries seen by admit()/refresh()
};

class RoamMember {
 public:
  // Throws std::invalid_argument on a bad config (self out of range, delta + gamma not
  // below the unit, too many servers).
  RoamMember(crypto::HashChain chain, RoamMemberConfig config);

  // Whether this member accepts non-pool traffic now; counts admitted / dropped.
  bool admit(int64_t now_ms);
  bool accepts(int64_t now_ms);
  bool active(int64_t now_ms);
  // The epoch covering now (cached: a status read or a tick costs no hashing).
  std::optional<crypto::EpochWindow> window_at(int64_t now_ms);
  // The update for a client now: position r (current epoch), j = r + 1 (or r in the
  // last epoch) with N_j, the key K_t with t = min(r + grant_epochs, n); the pool item
  // when asked (a client's first update). None before the first epoch or after the last.
  std::optional<RoamUpdate> update_for_client(int64_t now_ms, bool with_pool);
  // One line for logs and status: epoch, active member, this member's role.
  std::string describe(int64_t now_ms);

  const RoamMemberConfig& config() const { return config_; }
  const RoamMemberCounters& counters() const { return counters_; }

 private:
  void refresh(int64_t now_ms);

  RoamMemberConfig config_;
  crypto::RoamSchedule schedule_;
  RoamMemberCounters counters_;
  // The answer for [valid_from, valid_until).
  int64_t valid_from_ = 1;
  int64_t valid_until_ = 0;
  bool accepts_ = false;
  bool active_ = false;
  uint64_t epoch_ = 0;
  std::optional<crypto::EpochWindow> window_;  // the last window refresh() found
};

}  // namespace roam::control
