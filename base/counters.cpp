#include "base/counters.hpp"

#include <algorithm>

namespace roam {

bool CounterRegistry::has(std::string_view name) const {
  return std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.name == name; });
}

void CounterRegistry::add(std::string_view group, std::string_view name, const uint64_t* value) {
  if (value == nullptr || has(name)) return;
  entries_.push_back({std::string(group), std::string(name), value, {}, false});
}

void CounterRegistry::add_gauge(std::string_view group, std::string_view name, std::function<uint64_t()> read) {
  if (!read || has(name)) return;
  entries_.push_back({std::string(group), std::string(name), nullptr, std::move(read), true});
}

void CounterRegistry::add_total(std::string_view group, std::string_view name, std::function<uint64_t()> read) {
  if (!read || has(name)) return;
  entries_.push_back({std::string(group), std::string(name), nullptr, std::move(read), false});
}

void CounterRegistry::add_histogram(std::string_view group, std::string_view name, const Histogram* histogram,
                                    std::string_view help) {
  if (histogram == nullptr ||
      std::any_of(histograms_.begin(), histograms_.end(), [&](const HistogramEntry& h) { return h.name == name; }))
    return;
  histograms_.push_back({std::string(group), std::string(name), std::string(help), histogram});
}

void CounterRegistry::remove(std::string_view group) {
  std::erase_if(entries_, [&](const Entry& e) { return e.group == group; });
  std::erase_if(histograms_, [&](const HistogramEntry& h) { return h.group == group; });
}

std::string CounterRegistry::to_json() const {
  std::string out = "{";
  for (const auto& e : entries_) {
    if (out.size() > 1) out += ',';
    out += '"';
    out += e.name;  // names are ours: [a-z0-9_], nothing to escape
    out += "\":";
    out += std::to_string(e.read());
  }
  out += '}';
  return out;
}

std::string CounterRegistry::to_text(std::string_view group, bool all) const {
  std::string out;
  for (const auto& e : entries_) {
    if (e.group != group) continue;
    uint64_t v = e.read();
    if (v == 0 && !all) continue;
    if (!out.empty()) out += ", ";
    out += e.name;
    out += ' ';
    out += std::to_string(v);
  }
  return out.empty() ? "nothing counted" : out;
}

std::vector<std::pair<std::string, uint64_t>> CounterRegistry::read() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.emplace_back(e.name, e.read());
  return out;
}

std::vector<CounterRegistry::Reading> CounterRegistry::readings() const {
  std::vector<Reading> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back({e.group, e.name, e.is_gauge, e.read()});
  return out;
}

std::vector<CounterRegistry::HistogramReading> CounterRegistry::histograms() const {
  std::vector<HistogramReading> out;
  out.reserve(histograms_.size());
  for (const auto& h : histograms_) out.push_back({h.group, h.name, h.help, h.histogram});
  return out;
}

}  // namespace roam
