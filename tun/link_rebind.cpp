#include "tun/link_rebind.hpp"

#include <sodium.h>

#include <cstring>

static_assert(crypto_auth_BYTES == roam::link_rebind_mac_bytes);
static_assert(crypto_auth_KEYBYTES == roam::link_key_bytes);

namespace roam {

namespace {

size_t body_bytes(uint8_t version) {
  return link_rebind_header_bytes + (version == 4 ? 4 : 16) + 8;
}

}  // namespace

std::vector<uint8_t> encode_link_rebind(const IpAddress& inner, uint64_t counter, const LinkKey& key) {
  std::vector<uint8_t> out;
  out.reserve(body_bytes(inner.version) + link_rebind_mac_bytes);
  out.push_back(link_rebind_type);
  out.push_back(link_rebind_format);
  out.push_back(inner.version);
  out.push_back(0);
  out.insert(out.end(), inner.bytes.begin(), inner.bytes.begin() + static_cast<std::ptrdiff_t>(inner.size()));
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(counter >> shift));
  std::array<uint8_t, link_rebind_mac_bytes> mac{};
  crypto_auth(mac.data(), out.data(), out.size(), key.data());
  out.insert(out.end(), mac.begin(), mac.end());
  return out;
}

std::optional<LinkRebind> decode_link_rebind(std::span<const uint8_t> datagram) {
  if (datagram.size() < link_rebind_header_bytes) return std::nullopt;
  if (datagram[0] != link_rebind_type || datagram[1] != link_rebind_format || datagram[3] != 0) return std::nullopt;
  uint8_t version = datagram[2];
  if (version != 4 && version != 6) return std::nullopt;
  size_t body = body_bytes(version);
  if (datagram.size() != body + link_rebind_mac_bytes) return std::nullopt;
  LinkRebind rebind;
  rebind.inner.version = version;
  std::memcpy(rebind.inner.bytes.data(), datagram.data() + link_rebind_header_bytes, rebind.inner.size());
  const uint8_t* counter = datagram.data() + body - 8;
  for (int i = 0; i < 8; ++i) rebind.counter = (rebind.counter << 8) | counter[i];
  std::memcpy(rebind.mac.data(), datagram.data() + body, link_rebind_mac_bytes);
  return rebind;
}

bool verify_link_rebind(std::span<const uint8_t> datagram, const LinkKey& key) {
  if (datagram.size() < link_rebind_mac_bytes) return false;
  size_t body = datagram.size() - link_rebind_mac_bytes;
  return crypto_auth_verify(datagram.data() + body, datagram.data(), body, key.data()) == 0;
}

}  // namespace roam
