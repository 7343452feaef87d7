#include "stack/migrate/move_notice.hpp"

#include <cstring>

namespace roam::migrate {

namespace {
constexpr uint8_t magic[4] = {'R', 'S', 'M', 'V'};
constexpr uint8_t version = 1;
}  // namespace

std::vector<uint8_t> encode_move_notice(const MoveNotice& n) {
  std::vector<uint8_t> out(magic, magic + 4);
  out.push_back(version);
  out.push_back(static_cast<uint8_t>(n.kind));
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(n.sequence >> shift));
  out.push_back(n.old_address.version);
  out.insert(out.end(), n.old_address.bytes.begin(),
             n.old_address.bytes.begin() + static_cast<long>(n.old_address.size()));
  out.insert(out.end(), n.new_address.bytes.begin(),
             n.new_address.bytes.begin() + static_cast<long>(n.new_address.size()));
  for (uint16_t port : {n.old_port, n.new_port}) {
    out.push_back(static_cast<uint8_t>(port >> 8));
    out.push_back(static_cast<uint8_t>(port));
  }
  return out;
}

std::optional<MoveNotice> decode_move_notice(std::span<const uint8_t> b) {
  if (b.size() < 11 || std::memcmp(b.data(), magic, 4) != 0 || b[4] != version) return std::nullopt;
  if (b[5] != static_cast<uint8_t>(MoveNoticeKind::notice) && b[5] != static_cast<uint8_t>(MoveNoticeKind::ack))
    return std::nullopt;
  MoveNotice n;
  n.kind = static_cast<MoveNoticeKind>(b[5]);
  n.sequence =
      static_cast<uint32_t>(b[6]) << 24 | static_cast<uint32_t>(b[7]) << 16 | static_cast<uint32_t>(b[8]) << 8 | b[9];
  uint8_t family = b[10];
  if (family != 4 && family != 6) return std::nullopt;
  size_t address_bytes = family == 4 ? 4 : 16;
  if (b.size() != 11 + 2 * address_bytes + 4) return std::nullopt;
  n.old_address.version = n.new_address.version = family;
  std::memcpy(n.old_address.bytes.data(), b.data() + 11, address_bytes);
  std::memcpy(n.new_address.bytes.data(), b.data() + 11 + address_bytes, address_bytes);
  const uint8_t* ports = b.data() + 11 + 2 * address_bytes;
  n.old_port = static_cast<uint16_t>(ports[0] << 8 | ports[1]);
  n.new_port = static_cast<uint16_t>(ports[2] << 8 | ports[3]);
  if (n.old_port == 0 || n.new_port == 0) return std::nullopt;
  return n;
}

}  // namespace roam::migrate
