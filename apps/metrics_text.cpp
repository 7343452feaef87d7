#include "apps/metrics_text.hpp"

#include "stack/tcp_connection.hpp"

namespace roam {
namespace {

// Registry names are ours ([a-z0-9_]); anything else would still make a valid metric name.
void append_name_part(std::string& out, std::string_view part) {
  for (char c : part) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : '_';
  }
}

}  // namespace

std::string metrics_text(const std::vector<const CounterRegistry*>& registries) {
  std::string out;
  for (const CounterRegistry* registry : registries) {
    if (registry == nullptr) continue;
    for (const auto& r : registry->readings()) {
      std::string name = "roamstack_";
      append_name_part(name, r.group);
      name += '_';
      append_name_part(name, r.name);
      const char* type = r.gauge ? "gauge" : "counter";
      out += "# HELP " + name + " Roamstack " + std::string(r.group) + " " + type + " " + std::string(r.name) + "\n";
      out += "# TYPE " + name + " " + type + "\n";
      out += name + " " + std::to_string(r.value) + "\n";
    }
  }
  return out;
}

void add_connection_losses(CounterRegistry& registry) {
  for (auto reason = static_cast<uint8_t>(PeerLoss::reset_by_peer); reason <= static_cast<uint8_t>(PeerLoss::aborted);
       ++reason) {
    auto loss = static_cast<PeerLoss>(reason);
    std::string name = "lost_";
    append_name_part(name, peer_loss_name(loss));  // "reset by peer" -> reset_by_peer
    registry.add_total("connections", name, [loss] { return peer_losses(loss); });
  }
}

}  // namespace roam
