// SYN cookies (RFC 4987 section 3.6): a listener under a SYN flood answers each SYN with
// a SYN-ACK whose sequence number encodes what the handshake negotiated, keeps nothing,
// and rebuilds the connection from the client's ACK (ack - 1 is the cookie). Pure codec
// plus the rotating secrets; no I/O, no lwIP. Loop thread only (CookieJar).
//
// Layout of the 32-bit cookie (our ISN), as FreeBSD's syncookie:
//   bits 31..8  MAC: the low 24 bits of SipHash-2-4 (libsodium crypto_shorthash) keyed
//               with the secret of the cookie's period, over
//               u8 ip version | local address (16, IPv4 zero-padded) | remote address (16)
//               | u16 local port | u16 remote port | u32 client ISN | u32 period counter
//               | u8 low byte of the cookie (bits 7..0 below)      (integers big-endian)
//   bit  7      secret generation: period counter & 1
//   bits 6..4   MSS index into cookie_mss_table (the client's MSS, rounded down)
//   bits 3..1   window-scale index into cookie_window_scale_table (0: no window scaling;
//               otherwise the client's shift, rounded down: a smaller shift only makes
//               its window look smaller)
//   bit  0      SACK permitted (what the SYN-ACK granted)
// The period counter is now_ms / period_ms (15 s by default). A cookie made in period c
// verifies in periods c and c + 1 (the generation bit says which one it was made in), so
// it lives between one and two periods. Each period has its own random secret.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>

#include "crypto/sodium.hpp"
#include "stack/wire/tcp_header.hpp"

namespace roam::defense {

inline constexpr std::array<uint16_t, 8> cookie_mss_table{536, 1220, 1300, 1360, 1440, 1460, 8960, 65495};
inline constexpr uint8_t no_window_scaling = 0xff;
inline constexpr std::array<uint8_t, 8> cookie_window_scale_table{no_window_scaling, 0, 2, 4, 6, 7, 8, 9};
inline constexpr size_t cookie_key_bytes = 16;  // crypto_shorthash_KEYBYTES
inline constexpr uint64_t default_cookie_period_ms = 15'000;

// The connection a cookie is for, as this host sees it (local = the listener's side).
struct CookieFlow {
  uint8_t version = 4;
  std::array<uint8_t, 16> local{};
  std::array<uint8_t, 16> remote{};
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
};

// The flow of a segment that arrived here: local = its destination, remote = its source.
CookieFlow cookie_flow_of(const wire::TcpSegmentView& segment);

// What every keyed hash of one SYN starts with (the cookie's MAC, the retransmission
// table's record): version, local and remote address (16 bytes each), local and remote
// port, the client's ISN, big-endian. Writes the first syn_hash_prefix_bytes of `out`.
constexpr size_t syn_hash_prefix_bytes = 1 + 16 + 16 + 2 + 2 + 4;
void put_syn_hash_prefix(std::span<uint8_t> out, const CookieFlow& flow, uint32_t client_isn);

// What the handshake negotiated, as the cookie keeps it.
struct CookieParams {
  uint16_t mss = 536;
  std::optional<uint8_t> window_scale;  // the client's shift; nullopt: no window scaling
  bool sack_permitted = false;
  bool operator==(const CookieParams&) const = default;
};

// The client's values rounded down to what the tables hold (what decode gives back).
CookieParams round_cookie_params(const CookieParams& requested);

// Encodes a cookie for `flow` and the client's ISN with the secret of period `counter`.
uint32_t encode_cookie(std::span<const uint8_t, cookie_key_bytes> key, uint32_t counter, const CookieFlow& flow,
                       uint32_t client_isn, const CookieParams& requested);
// The parameters of `cookie` when its MAC verifies with this key and period; nullopt when
// not (forged, another flow or client ISN, another period's secret).
std::optional<CookieParams> decode_cookie(std::span<const uint8_t, cookie_key_bytes> key, uint32_t counter,
                                          const CookieFlow& flow, uint32_t client_isn, uint32_t cookie);
inline uint32_t cookie_generation(uint32_t cookie) { return (cookie >> 7) & 1u; }

// The two live secrets (this period's and the previous one's), replaced with fresh random
// ones as periods pass. Fed the time; reads no clock.
class CookieJar {
 public:
  explicit CookieJar(uint64_t period_ms = default_cookie_period_ms);
  uint64_t period_ms() const { return period_ms_; }

  uint32_t make(uint64_t now_ms, const CookieFlow& flow, uint32_t client_isn, const CookieParams& requested);
  // Verifies a cookie made in this period or the previous one.
  std::optional<CookieParams> check(uint64_t now_ms, const CookieFlow& flow, uint32_t client_isn, uint32_t cookie);

 private:
  void rotate(uint32_t counter);
  struct Slot {
    crypto::SecretBytes<cookie_key_bytes> key;
    std::optional<uint32_t> counter;  // the period this slot's secret belongs to
  };
  uint64_t period_ms_;
  std::array<Slot, 2> slots_;  // indexed by counter & 1
};

}  // namespace roam::defense
