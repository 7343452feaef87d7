#include "apps/metrics_text.hpp"

#include <fmt/format.h>

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

// A histogram as Prometheus reads one: cumulative `_bucket{le="BOUND"}` lines ending with
// le="+Inf", then `_sum` and `_count`. Numbers in their shortest exact form ("0.005", "1").
void append_histogram(std::string& out, const CounterRegistry::HistogramReading& h) {
  std::string name = "roamstack_";
  append_name_part(name, h.group);
  name += '_';
  append_name_part(name, h.name);
  std::string help(h.help);
  if (help.empty()) help = "Roamstack " + std::string(h.group) + " histogram " + std::string(h.name);
  out += "# HELP " + name + " " + help + "\n";
  out += "# TYPE " + name + " histogram\n";
  const auto& bounds = h.histogram->upper_bounds();
  std::vector<uint64_t> cumulative = h.histogram->cumulative();
  for (size_t i = 0; i < cumulative.size(); ++i) {
    std::string le = i < bounds.size() ? fmt::format("{}", bounds[i]) : "+Inf";
    out += fmt::format("{}_bucket{{le=\"{}\"}} {}\n", name, le, cumulative[i]);
  }
  out += fmt::format("{}_sum {}\n", name, h.histogram->sum());
  out += fmt::format("{}_count {}\n", name, h.histogram->count());
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
    for (const auto& h : registry->histograms()) append_histogram(out, h);
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
