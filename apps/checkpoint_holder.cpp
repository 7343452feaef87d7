#include "apps/checkpoint_holder.hpp"

#include "base/log.hpp"
#include "stack/migrate/checkpoint.hpp"

namespace roam {

CheckpointHolder::CheckpointHolder(CounterRegistry& registry, HolderOf holder_of) : holder_of_(std::move(holder_of)) {
  registry.add("checkpoint", "checkpoints_received", &counters_.received);
  registry.add("checkpoint", "checkpoints_kept", &counters_.kept);
  registry.add("checkpoint", "checkpoints_ignored", &counters_.ignored);
  registry.add("checkpoint", "checkpoints_malformed", &counters_.malformed);
  registry.add("checkpoint", "checkpoints_not_holder", &counters_.not_holder);
  registry.add("checkpoint", "checkpoints_evicted", &counters_.evicted);
  registry.add_gauge("checkpoint", "checkpoints_held", [this] { return static_cast<uint64_t>(held_.size()); });
}

void CheckpointHolder::on_checkpoint(const IpAddress& server, const control::CheckpointPush& push) {
  ++counters_.received;
  auto header = migrate::peek_checkpoint_header(push.sealed);
  if (!header) {
    ++counters_.malformed;
    return;
  }
  // Before the generation: a copy left behind has the newer clock (header comment).
  const std::optional<IpAddress> holder = holder_of_(header->connection_id);
  if (!holder || !(*holder == server)) {
    ++counters_.not_holder;
    uint64_t suppressed = 0;
    if (not_holder_log_.allow(suppressed))
      logger("checkpoint")
          ->warn("checkpoint of connection {} (generation {}) from {} refused: {} ({} more not logged)",
                 header->connection_id, header->generation, server.to_string(),
                 holder ? "the connection is at " + holder->to_string() : std::string("not open here"), suppressed);
    if (holder && on_stale_copy_) on_stale_copy_(server, header->connection_id);
    return;
  }
  auto it = held_.find(header->connection_id);
  if (it != held_.end()) {
    if (header->generation <= it->second.generation) {
      ++counters_.ignored;
      return;
    }
  } else if (held_.size() >= max_held) {
    held_.erase(held_.begin());
    ++counters_.evicted;
  }
  Held& held = held_[header->connection_id];
  held.generation = header->generation;
  held.sealed = push.sealed;
  ++counters_.kept;
}

std::vector<uint64_t> CheckpointHolder::ids() const {
  std::vector<uint64_t> out;
  out.reserve(held_.size());
  for (const auto& [id, held] : held_) out.push_back(id);
  return out;
}

const std::vector<uint8_t>* CheckpointHolder::latest(uint64_t connection_id) const {
  auto it = held_.find(connection_id);
  return it == held_.end() ? nullptr : &it->second.sealed;
}

}  // namespace roam
