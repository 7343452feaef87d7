#include "crypto/roam_schedule.hpp"

#include <algorithm>
#include <stdexcept>

#include "crypto/roam_keys.hpp"
#include "crypto/sodium.hpp"

namespace roam::crypto {

namespace {

void wipe(std::vector<ChainKey>& keys) {
  if (!keys.empty()) sodium_memzero(keys.data(), keys.size() * sizeof(ChainKey));
}

}  // namespace

unsigned EpochRule::bits_at(uint64_t epoch) const {
  unsigned m = 0;
  for (const auto& change : changes) {
    if (change.from_epoch > epoch) break;
    m = change.m;
  }
  return m;
}

uint64_t EpochRule::length_ms(uint64_t epoch, const ChainKey& key) const {
  return unit_ms * (1 + uint64_t{epoch_length_bits(key, bits_at(epoch))});
}

void EpochRule::set_from(uint64_t from_epoch, unsigned m) {
  std::erase_if(changes, [&](const EpochBitsChange& c) { return c.from_epoch >= from_epoch; });
  changes.push_back({from_epoch, m});
}

RoamSchedule::RoamSchedule(HashChain chain, EpochRule rule, uint32_t servers, uint64_t anchor,
                           int64_t anchor_start_ms)
    : chain_(std::move(chain)), rule_(std::move(rule)), servers_(servers), anchor_(anchor) {
  if (servers_ < 1 || servers_ > max_roam_servers) throw std::invalid_argument("roam schedule: 1..64 servers");
  if (!chain_.holds(anchor_)) throw std::invalid_argument("roam schedule: anchor epoch not in the chain");
  if (rule_.unit_ms < 1) throw std::invalid_argument("roam schedule: epoch unit below 1 ms");
  for (size_t i = 0; i < rule_.changes.size(); ++i) {
    if (rule_.changes[i].m > max_epoch_bits) throw std::invalid_argument("roam schedule: m above 24");
    if (i > 0 && rule_.changes[i].from_epoch <= rule_.changes[i - 1].from_epoch)
      throw std::invalid_argument("roam schedule: m changes out of order");
  }
  interval_ = chain_.interval();
  segment_starts_.push_back(anchor_start_ms);
}

uint64_t RoamSchedule::segment_last(size_t segment) const {
  return std::min(segment_first(segment) + interval_ - 1, chain_.top());
}

size_t RoamSchedule::segment_count() const {
  return static_cast<size_t>((chain_.top() - anchor_) / interval_ + 1);
}

void RoamSchedule::expand(size_t segment) {
  if (cached_segment_ == segment) return;
  uint64_t first = segment_first(segment);
  uint64_t last = segment_last(segment);
  cached_starts_.assign(static_cast<size_t>(last - first + 2), 0);
  cached_starts_[0] = segment_starts_[segment];
  // With m = 0 over the whole segment every epoch lasts unit_ms and no key is needed.
  bool fixed = rule_.bits_at(first) == 0;
  for (const auto& change : rule_.changes)
    if (change.from_epoch > first && change.from_epoch <= last && change.m != 0) fixed = false;
  std::vector<ChainKey> keys;
  if (!fixed) keys = chain_.keys(first, last);
  for (uint64_t e = first; e <= last; ++e) {
    size_t i = static_cast<size_t>(e - first);
    uint64_t length = fixed ? rule_.unit_ms : rule_.length_ms(e, keys[i]);
    cached_starts_[i + 1] = cached_starts_[i] + static_cast<int64_t>(length);
  }
  wipe(keys);
  cached_segment_ = segment;
}

void RoamSchedule::extend_to(size_t segment) {
  while (segment_starts_.size() <= segment) {
    expand(segment_starts_.size() - 1);
    segment_starts_.push_back(cached_starts_.back());
  }
}

EpochWindow RoamSchedule::window(uint64_t epoch) {
  if (epoch < anchor_ || epoch > chain_.top()) throw std::out_of_range("roam schedule: epoch outside the schedule");
  auto segment = static_cast<size_t>((epoch - anchor_) / interval_);
  extend_to(segment);
  expand(segment);
  size_t i = static_cast<size_t>(epoch - segment_first(segment));
  ChainKey key = chain_.key(epoch);
  EpochWindow w{epoch, cached_starts_[i], cached_starts_[i + 1], server_index(key, servers_)};
  sodium_memzero(key.data(), key.size());
  return w;
}

std::optional<EpochWindow> RoamSchedule::window_at(int64_t now_ms) {
  if (now_ms < segment_starts_.front()) return std::nullopt;
  while (segment_starts_.back() <= now_ms && segment_starts_.size() < segment_count())
    extend_to(segment_starts_.size());
  auto after = std::upper_bound(segment_starts_.begin(), segment_starts_.end(), now_ms);
  auto segment = static_cast<size_t>(after - segment_starts_.begin() - 1);
  expand(segment);
  if (now_ms >= cached_starts_.back()) return std::nullopt;  // past the last epoch
  auto next = std::upper_bound(cached_starts_.begin(), cached_starts_.end(), now_ms);
  auto i = static_cast<uint64_t>(next - cached_starts_.begin() - 1);
  return window(segment_first(segment) + i);
}

bool RoamSchedule::accepts(uint32_t member, int64_t now_ms, int64_t delta_ms, int64_t gamma_ms) {
  auto current = window_at(now_ms);
  if (!current) {
    if (now_ms < segment_starts_.front()) {
      EpochWindow first = window(anchor_);
      return first.server == member && now_ms >= first.start_ms - delta_ms;
    }
    EpochWindow last = window(chain_.top());
    return last.server == member && now_ms < last.end_ms + delta_ms + gamma_ms;
  }
  if (current->server == member) return true;
  if (current->epoch > anchor_ && now_ms < current->start_ms + delta_ms + gamma_ms &&
      window(current->epoch - 1).server == member)
    return true;
  if (current->epoch < chain_.top() && now_ms >= current->end_ms - delta_ms &&
      window(current->epoch + 1).server == member)
    return true;
  return false;
}

int64_t RoamSchedule::start_of(const HashChain& chain, const EpochRule& rule, uint64_t from, int64_t from_start_ms,
                               uint64_t to) {
  if (from == to) return from_start_ms;
  uint64_t low = std::min(from, to);
  uint64_t high = std::max(from, to);
  // Sum of the lengths of epochs low .. high - 1.
  std::vector<ChainKey> keys = chain.keys(low, high - 1);
  int64_t sum = 0;
  for (uint64_t e = low; e < high; ++e) sum += static_cast<int64_t>(rule.length_ms(e, keys[static_cast<size_t>(e - low)]));
  wipe(keys);
  return to > from ? from_start_ms + sum : from_start_ms - sum;
}

}  // namespace roam::crypto
