// CounterRegistry: the one place where a node's counters are named. Components keep their
// counters as plain uint64_t fields (cheap to bump on the data path) and register each
// under a stable name once; status replies, the exit log and (later) metrics all read the
// registry, so a counter added to a component shows up everywhere by registering it.
// Names are flat and unique ("sessions_imported", "handover_syns_forged"): they are the
// keys of `roamctl status` and of the benchmarks' JSON. Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/histogram.hpp"

namespace roam {

class CounterRegistry {
 public:
  // A counter kept by its owner; `value` must stay valid until remove(group) or the
  // registry's end. A name registered twice keeps its first registration.
  void add(std::string_view group, std::string_view name, const uint64_t* value);
  // A value computed when read that can go down (a table's size): a gauge in metrics.
  void add_gauge(std::string_view group, std::string_view name, std::function<uint64_t()> read);
  // A value computed when read that only grows (a sum of counters): a counter in metrics.
  void add_total(std::string_view group, std::string_view name, std::function<uint64_t()> read);
  // A histogram kept by its owner, valid as `value` above. Metrics only (apps/metrics_text:
  // roamstack_<group>_<name>_bucket, _sum, _count): status and the exit log show counters.
  // `help` is its HELP text there. A name registered twice keeps its first registration.
  void add_histogram(std::string_view group, std::string_view name, const Histogram* histogram,
                     std::string_view help = {});
  // Forgets every entry of a group, histograms too (its owner is going away).
  void remove(std::string_view group);

  // {"name":value,...} in registration order.
  std::string to_json() const;
  // "name value, name value" for one group (the exit log's line), nonzero values only
  // unless `all`.
  std::string to_text(std::string_view group, bool all = false) const;
  std::vector<std::pair<std::string, uint64_t>> read() const;

  // Every entry with its group and whether it is a gauge (metrics: apps/metrics_text).
  struct Reading {
    std::string_view group;
    std::string_view name;
    bool gauge = false;
    uint64_t value = 0;
  };
  std::vector<Reading> readings() const;
  struct HistogramReading {
    std::string_view group;
    std::string_view name;
    std::string_view help;
    const Histogram* histogram = nullptr;
  };
  std::vector<HistogramReading> histograms() const;

 private:
  struct Entry {
    std::string group;
    std::string name;
    const uint64_t* value = nullptr;
    std::function<uint64_t()> gauge;  // or a computed total
    bool is_gauge = false;
    uint64_t read() const { return value != nullptr ? *value : gauge(); }
  };
  struct HistogramEntry {
    std::string group;
    std::string name;
    std::string help;
    const Histogram* histogram = nullptr;
  };
  bool has(std::string_view name) const;
  std::vector<Entry> entries_;
  std::vector<HistogramEntry> histograms_;
};

}  // namespace roam
