#include "tools/bench/flood_common.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <thread>

namespace roam::bench {

namespace {

volatile std::sig_atomic_t stop_flag = 0;

void request_stop(int) { stop_flag = 1; }

}  // namespace

void install_stop_handlers() {
  struct sigaction stop {};
  stop.sa_handler = request_stop;
  sigaction(SIGTERM, &stop, nullptr);
  sigaction(SIGINT, &stop, nullptr);
}

bool stop_requested() { return stop_flag != 0; }

std::optional<long long> parse_whole_integer(std::string_view text) {
  const std::string copy(text);  // strtoll needs a terminator
  if (copy.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(copy.c_str(), &end, 10);
  if (*end != '\0' || errno != 0) return std::nullopt;
  return value;
}

std::optional<double> parse_finite_number(std::string_view text) {
  const std::string copy(text);
  if (copy.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(copy.c_str(), &end);
  if (*end != '\0' || errno != 0 || !std::isfinite(value)) return std::nullopt;
  return value;
}

long long integer_option(const std::string& name, const std::string& text, UsageError usage_error) {
  const auto value = parse_whole_integer(text);
  if (!value) usage_error("bad " + name + " '" + text + "'");
  return value.value_or(0);
}

double number_option(const std::string& name, const std::string& text, UsageError usage_error) {
  const auto value = parse_finite_number(text);
  if (!value) usage_error("bad " + name + " '" + text + "'");
  return value.value_or(0);
}

bool in_benchmark_range(uint32_t address) { return (address & 0xfffe0000u) == 0xc6120000u; }

bool prefix_in_benchmark_range(uint32_t base, int length) {
  return length >= 15 && length <= 32 && in_benchmark_range(base);
}

FloodBounds::FloodBounds(long long count, double seconds, double rate)
    : count_(count),
      rate_(rate),
      start_(Clock::now()),
      deadline_(start_ + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds))) {}

bool FloodBounds::keep_going(long long sent) const {
  return sent < count_ && !stop_requested() && Clock::now() < deadline_;
}

size_t FloodBounds::next_batch(long long sent, size_t batch) const {
  return static_cast<size_t>(std::clamp<long long>(count_ - sent, 0, static_cast<long long>(batch)));
}

void FloodBounds::pace(long long sent) const {
  if (rate_ <= 0) return;
  const auto due = start_ + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(static_cast<double>(sent) / rate_));
  std::this_thread::sleep_until(due);
}

double FloodBounds::elapsed_seconds() const {
  return std::chrono::duration<double>(Clock::now() - start_).count();
}

std::string FloodBounds::result_fields(long long sent) const {
  const double seconds = elapsed_seconds();
  char text[128];
  std::snprintf(text, sizeof text, "\"sent\": %lld, \"seconds\": %.3f, \"pps\": %.0f", sent, seconds,
                seconds > 0 ? static_cast<double>(sent) / seconds : 0.0);
  return text;
}

}  // namespace roam::bench
