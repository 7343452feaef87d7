// The roaming schedule (seed 002 section IV-A, IV-C): which pool member is the active
// server at a given time, computed from a hash chain. Epoch i uses K_i; it lasts
// unit_ms * (1 + R_i) with R_i = MSB_m(H'(K_i)) (m = 0: every epoch lasts unit_ms; an m
// change from epoch l on is how the pool shortens or lengthens epochs), and its active
// server is servers[server_index(K_i)]. Epochs follow one another without gaps from an
// anchor epoch whose start time is known. The same class serves a pool member (the whole
// chain, anchored at epoch 1 = the pool's start time) and a client (the keys from its
// current epoch up to its newest granted K_t, anchored by a roaming update).
//
// Exactly one member is active at any instant (windows do not overlap), so two members
// never both act as active for one epoch as long as their clocks agree within delta. The
// transitional interval only widens who *accepts* traffic: the new server from
// start - delta, the old one until end + delta + gamma.
//
// Pure (time is passed in, Unix milliseconds); one thread. Memory O(sqrt n): start times
// of every interval()-th epoch, and one expanded segment.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "crypto/hash_chain.hpp"

namespace roam::crypto {

struct EpochBitsChange {
  uint64_t from_epoch = 0;
  unsigned m = 0;  // <= max_epoch_bits
  bool operator==(const EpochBitsChange&) const = default;
};

struct EpochRule {
  uint64_t unit_ms = 1000;  // >= 1
  // m for epochs from `from_epoch` on; strictly increasing from_epoch. Before the first
  // change m = 0.
  std::vector<EpochBitsChange> changes;

  unsigned bits_at(uint64_t epoch) const;
  uint64_t length_ms(uint64_t epoch, const ChainKey& key) const;
  // Adds (or replaces, for an equal from_epoch) a change and drops later ones: a newer
  // roaming update's m,l supersedes what an older one said about the same epochs.
  void set_from(uint64_t from_epoch, unsigned m);
  bool operator==(const EpochRule&) const = default;
};

struct EpochWindow {
  uint64_t epoch = 0;
  int64_t start_ms = 0;
  int64_t end_ms = 0;  // exclusive
  uint32_t server = 0;
  bool operator==(const EpochWindow&) const = default;
};

class RoamSchedule {
 public:
  // Epochs anchor .. chain.top(); epoch `anchor` (held by the chain) starts at
  // anchor_start_ms. servers in 1..max_roam_servers. Throws std::invalid_argument.
  RoamSchedule(HashChain chain, EpochRule rule, uint32_t servers, uint64_t anchor, int64_t anchor_start_ms);

  uint64_t first_epoch() const { return anchor_; }
  uint64_t last_epoch() const { return chain_.top(); }
  uint32_t servers() const { return servers_; }
  const EpochRule& rule() const { return rule_; }
  const HashChain& chain() const { return chain_; }

  // epoch in first_epoch() .. last_epoch().
  EpochWindow window(uint64_t epoch);
  // The epoch covering now; none before the first epoch or after the last one ended.
  std::optional<EpochWindow> window_at(int64_t now_ms);
  // Does `member` accept traffic at now: it is active, or the previous epoch's server
  // within delta + gamma after the boundary, or the next one's within delta before it.
  // Requires delta_ms + gamma_ms < rule().unit_ms (only neighbours overlap).
  bool accepts(uint32_t member, int64_t now_ms, int64_t delta_ms, int64_t gamma_ms);

  // Start of epoch `to` given that epoch `from` starts at from_start_ms: both held by
  // chain, in either order (a roaming update names epoch j's start; a client needs r's).
  static int64_t start_of(const HashChain& chain, const EpochRule& rule, uint64_t from, int64_t from_start_ms,
                          uint64_t to);

 private:
  uint64_t segment_first(size_t segment) const { return anchor_ + segment * interval_; }
  uint64_t segment_last(size_t segment) const;
  size_t segment_count() const;
  void extend_to(size_t segment);
  void expand(size_t segment);

  HashChain chain_;
  EpochRule rule_;
  uint32_t servers_;
  uint64_t anchor_;
  uint64_t interval_;
  std::vector<int64_t> segment_starts_;  // start of segment_first(k), known so far
  // One expanded segment: start of each of its epochs plus the end of its last one.
  size_t cached_segment_ = SIZE_MAX;
  std::vector<int64_t> cached_starts_;
};

}  // namespace roam::crypto
