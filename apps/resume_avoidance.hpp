// Which pool members roam-client's resumes stay away from (PROTOCOL.md 14.5): a member it
// resumed a connection away from (taken for dead) is no takeover target for any
// connection for left_for_ms, and a member that refused a connection's RESUME because it
// holds the connection live (reason 33) or left it unanswered is not asked again for that
// connection for tried_for_ms: the next candidate of the schedule is. Without it the
// schedule names a dead member again when its epoch comes (its RESUME goes unanswered),
// and a refusal ends the resume. Pure state, fed the loop time; owned by the
// CheckpointResumer, loop thread only.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "base/ip_address.hpp"

namespace roam {

class ResumeAvoidance {
 public:
  static constexpr uint64_t left_for_ms = 60'000;
  static constexpr uint64_t tried_for_ms = 30'000;

  // A connection was resumed away from `member` (silent: taken for dead).
  void left(const IpAddress& member, uint64_t now_ms);
  // `member` refused connection `id` with reason 33, or never answered its RESUME.
  void tried(uint64_t id, const IpAddress& member, uint64_t now_ms);
  // The connection ended or was resumed: its own entries go.
  void forget(uint64_t id) { tried_.erase(id); }
  // The members no RESUME of connection `id` goes to now (expired entries are dropped).
  std::vector<IpAddress> avoided(uint64_t id, uint64_t now_ms);
  // Whether connection `id` has members it avoids (a pick now is a retry elsewhere).
  bool retrying(uint64_t id, uint64_t now_ms);

 private:
  struct Entry {
    IpAddress member;
    uint64_t until_ms = 0;
  };
  static void add(std::vector<Entry>& entries, const IpAddress& member, uint64_t until_ms);
  static void expire(std::vector<Entry>& entries, uint64_t now_ms);
  std::vector<Entry> left_;                                  // a pool has a handful of members
  std::unordered_map<uint64_t, std::vector<Entry>> tried_;  // by connection id
};

}  // namespace roam
