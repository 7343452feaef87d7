#include "apps/resume_silence.hpp"

#include <algorithm>

namespace roam {

std::optional<uint64_t> server_silence_ms(const ServerSilence& view) {
  if (view.server_finished) return std::nullopt;
  uint64_t silent = view.since_segment_ms;
  if (view.since_window_closed_ms) silent = std::min(silent, *view.since_window_closed_ms);
  if (view.since_resumed_ms) silent = std::min(silent, *view.since_resumed_ms);
  return silent;
}

}  // namespace roam
