#include "stack/defense/syn_cookie.hpp"

#include <algorithm>

namespace roam::defense {

namespace {
static_assert(cookie_key_bytes == crypto_shorthash_KEYBYTES);

uint8_t mss_index(uint16_t mss) {
  uint8_t index = 0;  // below the smallest entry: 536, what RFC 9293 lets a sender assume
  for (uint8_t i = 0; i < cookie_mss_table.size(); ++i)
    if (cookie_mss_table[i] <= mss) index = i;
  return index;
}

uint8_t window_scale_index(std::optional<uint8_t> shift) {
  if (!shift) return 0;
  uint8_t index = 1;
  for (uint8_t i = 1; i < cookie_window_scale_table.size(); ++i)
    if (cookie_window_scale_table[i] <= *shift) index = i;
  return index;
}

uint32_t mac24(std::span<const uint8_t, cookie_key_bytes> key, uint32_t counter, const CookieFlow& flow,
               uint32_t client_isn, uint8_t low_byte) {
  std::array<uint8_t, syn_hash_prefix_bytes + 4 + 1> input{};
  put_syn_hash_prefix(input, flow, client_isn);
  size_t at = syn_hash_prefix_bytes;
  for (int shift = 24; shift >= 0; shift -= 8) input[at++] = static_cast<uint8_t>(counter >> shift);
  input[at++] = low_byte;
  std::array<uint8_t, crypto_shorthash_BYTES> hash{};
  crypto_shorthash(hash.data(), input.data(), at, key.data());
  return (uint32_t{hash[0]} << 16) | (uint32_t{hash[1]} << 8) | hash[2];
}
}  // namespace

void put_syn_hash_prefix(std::span<uint8_t> out, const CookieFlow& flow, uint32_t client_isn) {
  size_t at = 0;
  out[at++] = flow.version;
  std::copy(flow.local.begin(), flow.local.end(), out.begin() + static_cast<std::ptrdiff_t>(at));
  at += 16;
  std::copy(flow.remote.begin(), flow.remote.end(), out.begin() + static_cast<std::ptrdiff_t>(at));
  at += 16;
  for (uint16_t port : {flow.local_port, flow.remote_port}) {
    out[at++] = static_cast<uint8_t>(port >> 8);
    out[at++] = static_cast<uint8_t>(port);
  }
  for (int shift = 24; shift >= 0; shift -= 8) out[at++] = static_cast<uint8_t>(client_isn >> shift);
}

CookieParams round_cookie_params(const CookieParams& requested) {
  CookieParams out;
  out.mss = cookie_mss_table[mss_index(requested.mss)];
  uint8_t ws = window_scale_index(requested.window_scale);
  if (ws != 0) out.window_scale = cookie_window_scale_table[ws];
  out.sack_permitted = requested.sack_permitted;
  return out;
}

uint32_t encode_cookie(std::span<const uint8_t, cookie_key_bytes> key, uint32_t counter, const CookieFlow& flow,
                       uint32_t client_isn, const CookieParams& requested) {
  const uint8_t low = static_cast<uint8_t>(((counter & 1u) << 7) | (mss_index(requested.mss) << 4) |
                                           (window_scale_index(requested.window_scale) << 1) |
                                           (requested.sack_permitted ? 1u : 0u));
  return (mac24(key, counter, flow, client_isn, low) << 8) | low;
}

std::optional<CookieParams> decode_cookie(std::span<const uint8_t, cookie_key_bytes> key, uint32_t counter,
                                          const CookieFlow& flow, uint32_t client_isn, uint32_t cookie) {
  const uint8_t low = static_cast<uint8_t>(cookie);
  if (cookie_generation(cookie) != (counter & 1u)) return std::nullopt;
  // Not constant-time: the MAC is not secret once sent, and a mismatch reveals nothing
  // about the key (the attacker already saw any cookie it could compare with).
  if (mac24(key, counter, flow, client_isn, low) != (cookie >> 8)) return std::nullopt;
  CookieParams out;
  out.mss = cookie_mss_table[(low >> 4) & 7u];
  const uint8_t ws = (low >> 1) & 7u;
  if (ws != 0) out.window_scale = cookie_window_scale_table[ws];
  out.sack_permitted = (low & 1u) != 0;
  return out;
}

CookieJar::CookieJar(uint64_t period_ms) : period_ms_(std::max<uint64_t>(period_ms, 1)) {}

void CookieJar::rotate(uint32_t counter) {
  Slot& slot = slots_[counter & 1u];
  if (slot.counter == counter) return;
  randombytes_buf(slot.key.data(), cookie_key_bytes);
  slot.counter = counter;
}

uint32_t CookieJar::make(uint64_t now_ms, const CookieFlow& flow, uint32_t client_isn, const CookieParams& requested) {
  const auto counter = static_cast<uint32_t>(now_ms / period_ms_);
  rotate(counter);
  return encode_cookie(slots_[counter & 1u].key.span(), counter, flow, client_isn, requested);
}

std::optional<CookieParams> CookieJar::check(uint64_t now_ms, const CookieFlow& flow, uint32_t client_isn,
                                             uint32_t cookie) {
  const auto now = static_cast<uint32_t>(now_ms / period_ms_);
  const uint32_t made = cookie_generation(cookie) == (now & 1u) ? now : now - 1;
  const Slot& slot = slots_[made & 1u];
  if (slot.counter != made) return std::nullopt;  // that period's secret is gone (or never was)
  return decode_cookie(slot.key.span(), made, flow, client_isn, cookie);
}

CookieFlow cookie_flow_of(const wire::TcpSegmentView& segment) {
  CookieFlow flow;
  flow.version = segment.version;
  flow.local = segment.dst_address;
  flow.remote = segment.src_address;
  flow.local_port = segment.dst_port;
  flow.remote_port = segment.src_port;
  return flow;
}

}  // namespace roam::defense
