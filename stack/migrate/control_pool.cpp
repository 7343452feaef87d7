#include "stack/migrate/control_pool.hpp"

#include <uv.h>

#include <algorithm>

#include "base/log.hpp"
#include "stack/migrate/address_answer.hpp"

namespace roam::migrate {

IdleAction idle_action(uint64_t now_ms, uint64_t last_heard_ms, std::optional<uint64_t> ping_sent_ms,
                       const ControlPoolLimits& limits) {
  if (ping_sent_ms)
    return now_ms - std::min(now_ms, *ping_sent_ms) >= limits.ping_timeout_ms ? IdleAction::drop : IdleAction::none;
  return now_ms - std::min(now_ms, last_heard_ms) >= limits.ping_after_ms ? IdleAction::ping : IdleAction::none;
}

uint64_t reconnect_delay_ms(unsigned failures) {
  if (failures == 0) return 0;
  constexpr uint64_t max_ms = 60'000;
  unsigned doublings = std::min(failures - 1, 6u);  // 1 s << 6 = 64 s: capped below
  return std::min(max_ms, uint64_t{1000} << doublings);
}

ControlPool::ControlPool(Node& node, ControlPoolLimits limits, OpenFn open)
    : node_(node), limits_(limits), open_(std::move(open)) {}

ControlPool::~ControlPool() {
  clear();
}

uint64_t ControlPool::now() const {
  return uv_now(node_.loop());
}

void ControlPool::want(const std::string& target) {
  if (cleared_ || wanted_.size() >= limits_.max_targets) return;
  wanted_.try_emplace(target);
}

size_t ControlPool::ready_count() const {
  return static_cast<size_t>(
      std::count_if(entries_.begin(), entries_.end(), [](const auto& e) { return e.second.ready; }));
}

std::unique_ptr<FrameStream> ControlPool::take(const std::string& target) {
  auto found = entries_.find(target);
  // Opening, or a ping's answer still due (it would pass for the move's address answer):
  // the move opens its own.
  if (found == entries_.end() || !found->second.ready || found->second.ping_sent_ms || !found->second.stream->open())
    return nullptr;
  std::unique_ptr<FrameStream> stream = std::move(found->second.stream);
  entries_.erase(found);
  ++counters_.reused;
  return stream;
}

bool ControlPool::put(const std::string& target, std::unique_ptr<FrameStream> stream) {
  bool room = entries_.count(target) != 0 || entries_.size() < limits_.max_targets;
  if (cleared_ || !stream || !stream->open() || !stream->authenticated() || !room) {
    ++counters_.not_kept;
    if (stream) stream->close_after_writes();
    return false;
  }
  drop(target, false);  // at most one per target: the one that just worked stays
  Entry entry;
  entry.stream = std::move(stream);
  adopt(target, entry);
  entry.ready = true;
  entries_.emplace(target, std::move(entry));
  return true;
}

void ControlPool::adopt(const std::string& target, Entry& entry) {
  entry.last_heard_ms = now();
  entry.stream->rebind([this, target](FrameStream& s, Frame f) { on_frame(target, s, f); },
                       [this, target](FrameStream& s, const std::string& reason) {
                         logger("migrate")->debug("cached control connection to {} ended: {}", target, reason);
                         on_closed(target, s);
                       });
}

void ControlPool::on_frame(const std::string& target, FrameStream& stream, const Frame& frame) {
  auto found = entries_.find(target);
  if (found == entries_.end() || found->second.stream.get() != &stream) return;
  Entry& entry = found->second;
  if (entry.ready && entry.ping_sent_ms && frame.type == FrameType::reply) {
    entry.ping_sent_ms.reset();
    entry.last_heard_ms = now();
    return;
  }
  // Nothing else is due on an idle connection: whatever the target means by it, a move
  // would read it as its own answer.
  logger("migrate")->info("cached control connection to {}: unexpected frame {}: dropped", target,
                          static_cast<int>(frame.type));
  drop(target, true);
}

void ControlPool::on_closed(const std::string& target, FrameStream& stream) {
  auto found = entries_.find(target);
  if (found == entries_.end() || found->second.stream.get() != &stream) return;
  if (!found->second.ready) {
    auto wanted = wanted_.find(target);
    if (wanted != wanted_.end()) {
      ++wanted->second.failures;
      wanted->second.next_attempt_ms = now() + reconnect_delay_ms(wanted->second.failures);
    }
  }
  drop(target, found->second.ready);
}

void ControlPool::drop(const std::string& target, bool stale) {
  auto found = entries_.find(target);
  if (found == entries_.end()) return;
  if (stale) {
    ++counters_.stale;
    logger("migrate")->info("cached control connection to {} is gone: the next move opens a new one", target);
  }
  FrameStream* raw = found->second.stream.release();
  entries_.erase(found);
  if (raw == nullptr) return;
  raw->close_after_writes();
  // Maybe inside its own callback: destroyed later.
  node_.defer([raw] { delete raw; });
}

void ControlPool::open(const std::string& target, uint64_t now_ms) {
  Entry entry;
  entry.last_heard_ms = now_ms;
  auto stream = open_(
      target, [this, target](FrameStream& s, Frame f) { on_frame(target, s, f); },
      [this, target](FrameStream& s, const std::string& reason) {
        logger("migrate")->debug("control connection to {} opened in advance ended: {}", target, reason);
        on_closed(target, s);
      },
      [this, target](FrameStream& s) {
        auto found = entries_.find(target);
        if (found == entries_.end() || found->second.stream.get() != &s) return;
        found->second.ready = true;
        found->second.last_heard_ms = now();
        if (auto wanted = wanted_.find(target); wanted != wanted_.end()) wanted->second.failures = 0;
        logger("migrate")->info("control connection to {} ready for moves", target);
      });
  auto& wanted = wanted_[target];
  if (!stream) {
    ++wanted.failures;
    wanted.next_attempt_ms = now_ms + reconnect_delay_ms(wanted.failures);
    return;
  }
  ++counters_.opened;
  entry.stream = std::move(stream);
  entries_.emplace(target, std::move(entry));
}

void ControlPool::on_time(uint64_t now_ms) {
  if (cleared_) return;
  std::vector<std::pair<std::string, bool>> to_drop;
  for (auto& [target, entry] : entries_) {
    if (!entry.ready) continue;
    switch (idle_action(now_ms, entry.last_heard_ms, entry.ping_sent_ms, limits_)) {
      case IdleAction::none:
        break;
      case IdleAction::ping:
        entry.ping_sent_ms = now_ms;
        ++counters_.pings;
        entry.stream->send(FrameType::address_request, encode_address_request(TransferFeatures{}));
        break;
      case IdleAction::drop:
        to_drop.emplace_back(target, true);
        break;
    }
  }
  for (const auto& [target, stale] : to_drop) drop(target, stale);
  for (auto& [target, wanted] : wanted_) {
    if (entries_.count(target) != 0 || now_ms < wanted.next_attempt_ms) continue;
    if (entries_.size() >= limits_.max_targets) break;
    open(target, now_ms);
  }
}

void ControlPool::clear() {
  cleared_ = true;
  std::vector<std::string> targets;
  for (const auto& [target, entry] : entries_) targets.push_back(target);
  for (const auto& target : targets) drop(target, false);
}

}  // namespace roam::migrate
