#include "stack/defense/flood_detector.hpp"

#include <algorithm>
#include <cmath>

namespace roam::defense {

namespace {
// A time jump longer than this many bins (a suspended process) closes only this many: the
// baseline has long decayed to the empty rate by then.
constexpr uint64_t max_bins_per_update = 1000;
}  // namespace

double RateSeries::sigma() const {
  const double bin_s = static_cast<double>(config_->bin_ms) / 1000.0;
  const double m = state_.baseline;
  const double poisson = std::sqrt(std::max(m, 0.0) * bin_s) / bin_s;
  return std::max({1.25 * state_.deviation, config_->relative_sigma * m, poisson, config_->sigma_floor});
}

double RateSeries::quiet_rate() const {
  return std::max(config_->min_rate, state_.baseline + config_->drift_k * sigma());
}

void RateSeries::close_bin(bool learn) {
  const double rate = static_cast<double>(current_) * 1000.0 / static_cast<double>(config_->bin_ms);
  current_ = 0;
  state_.rate = rate;
  const double s = sigma();
  const double z = (rate - state_.baseline) / s;
  // Only past the warm-up: before it the baseline is still a guess.
  if (state_.bins >= config_->warmup_bins)
    state_.cusum = std::min(std::max(0.0, state_.cusum + z - config_->drift_k), 10.0 * config_->threshold_h);
  if (learn) {
    if (state_.bins == 0) {
      state_.baseline = rate;
    } else {
      // Past the warm-up a bin teaches at most m + k s: a flood rising before the alarm
      // cannot pull the baseline up with it, a slow (diurnal) rise still is followed.
      // In the warm-up, a plain running mean (weight 1/n): a bursty load's first seconds
      // must not set a baseline the EWMA then takes minutes to correct.
      const bool warming = state_.bins < config_->warmup_bins;
      const double taught = warming ? rate : std::min(rate, state_.baseline + config_->drift_k * s);
      const double weight = warming ? std::max(config_->alpha, 1.0 / static_cast<double>(state_.bins + 1)) : config_->alpha;
      state_.deviation += weight * (std::abs(taught - state_.baseline) - state_.deviation);
      state_.baseline += weight * (taught - state_.baseline);
    }
  }
  ++state_.bins;
}

FloodDetector::FloodDetector(FloodDetectorConfig config) : config_(config), syn_(config_) {}

FloodDetector::Destination* FloodDetector::destination(uint16_t port) {
  auto it = destinations_.find(port);
  if (it != destinations_.end()) return &it->second;
  if (destinations_.size() >= config_.max_destinations) return nullptr;
  return &destinations_.emplace(port, Destination{RateSeries(config_), RateSeries(config_)}).first->second;
}

void FloodDetector::on_syn(uint16_t port) {
  syn_.count();
  if (Destination* d = destination(port)) d->syns.count();
}

void FloodDetector::on_packet(uint16_t port) {
  if (Destination* d = destination(port)) d->packets.count();
}

FloodDetector::Transition FloodDetector::update(uint64_t now_ms) {
  if (!started_) {
    started_ = true;
    bin_start_ms_ = now_ms;
    return Transition::none;
  }
  Transition last = Transition::none;
  uint64_t closed = 0;
  while (now_ms >= bin_start_ms_ + config_.bin_ms) {
    bin_start_ms_ += config_.bin_ms;
    if (++closed > max_bins_per_update) {
      bin_start_ms_ = now_ms - (now_ms - bin_start_ms_) % config_.bin_ms;
      break;
    }
    const Transition t = close_bin(bin_start_ms_);
    if (t != Transition::none) last = t;
  }
  return last;
}

FloodDetector::Transition FloodDetector::close_bin(uint64_t bin_end_ms) {
  // Frozen while alarmed: the flood must not become the normal it is measured against.
  const bool learn = !state_.alarmed;
  syn_.close_bin(learn);
  for (auto& [port, d] : destinations_) {
    d.packets.close_bin(learn);
    d.syns.close_bin(learn);
  }
  state_.syn = syn_.state();
  const double rate = state_.syn.rate;

  if (!state_.alarmed) {
    if (state_.syn.cusum >= config_.threshold_h && rate >= config_.min_rate) {
      state_.alarmed = true;
      state_.alarmed_since_ms = bin_end_ms;
      state_.peak_rate = static_cast<uint64_t>(rate);
      quiet_ = false;
      ++state_.alarms;
      return Transition::alarm;
    }
    return Transition::none;
  }
  state_.peak_rate = std::max(state_.peak_rate, static_cast<uint64_t>(rate));
  if (rate >= syn_.quiet_rate()) {
    quiet_ = false;
    return Transition::none;
  }
  if (!quiet_) {
    quiet_ = true;
    quiet_since_ms_ = bin_end_ms;
  }
  if (bin_end_ms - quiet_since_ms_ + config_.bin_ms < config_.clear_ms) return Transition::none;
  state_.alarmed = false;
  quiet_ = false;
  syn_.reset_cusum();
  state_.syn = syn_.state();
  return Transition::all_clear;
}

std::optional<RateSeries::State> FloodDetector::packets_of(uint16_t port) const {
  auto it = destinations_.find(port);
  if (it == destinations_.end()) return std::nullopt;
  return it->second.packets.state();
}

std::optional<RateSeries::State> FloodDetector::syns_of(uint16_t port) const {
  auto it = destinations_.find(port);
  if (it == destinations_.end()) return std::nullopt;
  return it->second.syns.state();
}

}  // namespace roam::defense
