#include "stack/wire/syn_options.hpp"

namespace roam::wire {

namespace {
constexpr uint8_t kind_end = 0;
constexpr uint8_t kind_nop = 1;
constexpr uint8_t kind_mss = 2;
constexpr uint8_t kind_window_scale = 3;
constexpr uint8_t kind_sack_permitted = 4;
constexpr uint8_t kind_timestamp = 8;
}  // namespace

SynOptions parse_syn_options(std::span<const uint8_t> options) {
  SynOptions out;
  size_t i = 0;
  while (i < options.size()) {
    const uint8_t kind = options[i];
    if (kind == kind_end) break;
    if (kind == kind_nop) {
      ++i;
      continue;
    }
    if (i + 1 >= options.size()) break;
    const uint8_t length = options[i + 1];
    if (length < 2 || i + length > options.size()) break;
    const auto body = options.subspan(i + 2, length - 2u);
    switch (kind) {
      case kind_mss:
        if (length != 4) return out;
        out.mss = static_cast<uint16_t>((body[0] << 8) | body[1]);
        break;
      case kind_window_scale:
        if (length != 3) return out;
        out.window_scale = body[0];
        break;
      case kind_sack_permitted:
        if (length != 2) return out;
        out.sack_permitted = true;
        break;
      case kind_timestamp:
        if (length != 10) return out;
        out.timestamp = (uint32_t{body[0]} << 24) | (uint32_t{body[1]} << 16) | (uint32_t{body[2]} << 8) | body[3];
        break;
      default:
        break;  // unknown options are skipped by their length
    }
    i += length;
  }
  return out;
}

size_t write_synack_options(std::span<uint8_t> out, uint16_t mss, std::optional<uint8_t> window_scale) {
  if (out.size() < synack_options_max) return 0;
  out[0] = kind_mss;
  out[1] = 4;
  out[2] = static_cast<uint8_t>(mss >> 8);
  out[3] = static_cast<uint8_t>(mss);
  if (!window_scale) return 4;
  out[4] = kind_nop;
  out[5] = kind_window_scale;
  out[6] = 3;
  out[7] = *window_scale;
  return 8;
}

}  // namespace roam::wire
