// When a roaming pool member hands its sessions to the active member (seed 002 section
// IV-C; PROTOCOL.md 13.6): pure policy, no I/O, no clock (the loop's time is passed in).
// RoamPoolService asks it on every tick and runs the move it names through
// MigrationService::move_sessions.
//
// A member that is not the active one of the current epoch and holds sessions moves them
// all to the active member: once as soon as it sees the epoch (the boundary, when it was
// the active member before), and again, at most every retry_ms, while a move failed or
// sessions it did not offer last time arrived (a client that opened a connection in the
// transitional interval). Sessions that stayed (unmovable ones) do not make it try again
// in the same epoch. The active member moves nothing, so when an epoch's active member is
// the same as the last one, nothing moves.
// A member some session here was resumed away from (a client took it for dead: killed,
// partitioned or stopped; PROTOCOL.md 14.5) is no move target for avoid_ms after the
// resume: while it is active nothing moves, and the sessions stay here. Moving a resumed
// session back to it would freeze the session for the move (seconds, when the member is
// stopped and its control port does not answer) and make the client take this member for
// dead too, or hand the session to a member that still holds a stale copy of it.
// One thread (the server's loop).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>

#include "apps/resume_avoidance.hpp"

namespace roam {

struct RoamMoveView {
  uint64_t now_ms = 0;    // the loop's time
  uint64_t epoch = 0;     // the current epoch (0: none: before the pool starts, or after its chain)
  uint32_t active = 0;    // the current epoch's active member
  size_t sessions = 0;    // sessions this member holds now
  bool moving = false;    // a move (of any origin: roamctl migrate too) is running
};

class RoamMovePlan {
 public:
  explicit RoamMovePlan(uint32_t self, uint64_t retry_ms = 1000) : self_(self), retry_ms_(retry_ms) {}

  // The member to move every session to now, or none. A returned target counts as an
  // attempt: call finished() when the move ends (or at once when it could not start).
  std::optional<uint32_t> next(const RoamMoveView& view);
  // `offered` sessions were offered, `left` of them are still here (stayed or failed),
  // `failed` says whether the move (or a session of it) failed.
  void finished(uint64_t now_ms, size_t offered, size_t left, bool failed);
  // A session was resumed here away from `member` at now_ms: no moves to it until avoid_ms later.
  void avoid(uint32_t member, uint64_t now_ms);
  // As long as the client avoids a member it left (roam-client's ResumeAvoidance).
  static constexpr uint64_t avoid_ms = ResumeAvoidance::left_for_ms;

 private:
  uint32_t self_;
  uint64_t retry_ms_;
  uint64_t attempted_epoch_ = 0;  // the epoch of the last attempt (0: none yet)
  uint64_t finished_ms_ = 0;
  bool running_ = false;
  bool last_failed_ = false;
  size_t left_ = 0;  // sessions that stayed after the last attempt
  std::map<uint32_t, uint64_t> avoided_until_;  // member -> loop time its avoidance ends
};

}  // namespace roam
