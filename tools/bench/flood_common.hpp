// flood_common: what the bounded flood generators of tools/bench share (acm_flood,
// syn_flood): a stop on SIGTERM or SIGINT that still prints the result line, whole-string
// numbers for their options, the benchmarking-range rule for spoofed sources, and the
// bounds that make every flood stop (a count and a duration, and an optional rate).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace roam::bench {

// SIGTERM and SIGINT set a flag instead of ending the process, without SA_RESTART: a
// blocked sendmmsg returns EINTR, so the stop is prompt and the flood prints its line.
void install_stop_handlers();
bool stop_requested();

// Whole-string numbers only: "12x" or "" is a mistake, not 12 or 0.
std::optional<long long> parse_whole_integer(std::string_view text);
std::optional<double> parse_finite_number(std::string_view text);

// The same for a tool's option: the value, or `usage_error` (which must not return) called
// with "bad NAME 'TEXT'".
using UsageError = void (*)(const std::string& why);
long long integer_option(const std::string& name, const std::string& text, UsageError usage_error);
double number_option(const std::string& name, const std::string& text, UsageError usage_error);

// Whether an IPv4 address (host byte order) lies in 198.18.0.0/15 (RFC 2544): spoofed
// sources come only from there, so a mistaken run can never impersonate a real host.
bool in_benchmark_range(uint32_t address);
// The same for a prefix: all of it inside the range.
bool prefix_in_benchmark_range(uint32_t base, int length);

// A flood's bounds, from its start (construction): it stops after `count` packets or
// `seconds`, whichever comes first, or on a stop signal; rate > 0 paces it to that many
// packets a second.
class FloodBounds {
 public:
  FloodBounds(long long count, double seconds, double rate);

  // Whether to send more after `sent` packets.
  bool keep_going(long long sent) const;
  // How many packets the next send may take: at most `batch`, never past the count.
  size_t next_batch(long long sent, size_t batch) const;
  // With a rate, sleeps until the packet after `sent` is due; without, returns at once.
  void pace(long long sent) const;
  double elapsed_seconds() const;
  // The fields every generator's result line starts with: "sent": N, "seconds": S, "pps": P.
  std::string result_fields(long long sent) const;

 private:
  using Clock = std::chrono::steady_clock;
  long long count_;
  double rate_;
  Clock::time_point start_;
  Clock::time_point deadline_;
};

}  // namespace roam::bench
