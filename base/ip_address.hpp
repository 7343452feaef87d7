// IpAddress / IpPrefix: IPv4 and IPv6 addresses and prefixes as plain values, with a
// parser for "198.18.0.0/15" or "2001:db8::/32" and longest-prefix helpers. Pure.
#pragma once

#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace roam {

struct IpAddress {
  uint8_t version = 4;                 // 4 or 6
  std::array<uint8_t, 16> bytes = {};  // IPv4 uses the first 4

  size_t size() const { return version == 4 ? 4 : 16; }
  std::span<const uint8_t> span() const { return {bytes.data(), size()}; }
  bool operator==(const IpAddress& other) const {
    return version == other.version && std::memcmp(bytes.data(), other.bytes.data(), size()) == 0;
  }

  static std::optional<IpAddress> parse(std::string_view text) {
    std::string s(text);
    IpAddress a;
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
      a.version = 4;
      return a;
    }
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
      a.version = 6;
      return a;
    }
    return std::nullopt;
  }
  std::string to_string() const {
    char text[INET6_ADDRSTRLEN] = {};
    inet_ntop(version == 4 ? AF_INET : AF_INET6, bytes.data(), text, sizeof text);
    return text;
  }
  // Destination and source address of a raw IP packet (version from the first nibble),
  // if it is long enough to hold them.
  static std::optional<IpAddress> destination_of(std::span<const uint8_t> packet) { return address_at(packet, 16, 24); }
  static std::optional<IpAddress> source_of(std::span<const uint8_t> packet) { return address_at(packet, 12, 8); }

 private:
  static std::optional<IpAddress> address_at(std::span<const uint8_t> packet, size_t v4_offset, size_t v6_offset) {
    if (packet.empty()) return std::nullopt;
    IpAddress a;
    a.version = static_cast<uint8_t>(packet[0] >> 4);
    if (a.version == 4 && packet.size() >= 20) {
      std::memcpy(a.bytes.data(), packet.data() + v4_offset, 4);
      return a;
    }
    if (a.version == 6 && packet.size() >= 40) {
      std::memcpy(a.bytes.data(), packet.data() + v6_offset, 16);
      return a;
    }
    return std::nullopt;
  }
};

struct IpPrefix {
  IpAddress address;
  uint8_t length = 0;

  bool contains(const IpAddress& a) const {
    if (a.version != address.version) return false;
    size_t full = length / 8;
    if (std::memcmp(a.bytes.data(), address.bytes.data(), full) != 0) return false;
    unsigned rest = length % 8;
    if (rest == 0) return true;
    auto mask = static_cast<uint8_t>(0xFF << (8 - rest));
    return (a.bytes[full] & mask) == (address.bytes[full] & mask);
  }

  // "ADDR/LEN", or a bare address meaning a host prefix.
  static std::optional<IpPrefix> parse(std::string_view text) {
    IpPrefix p;
    auto slash = text.find('/');
    auto addr = IpAddress::parse(text.substr(0, slash));
    if (!addr) return std::nullopt;
    p.address = *addr;
    unsigned max_len = addr->version == 4 ? 32 : 128;
    if (slash == std::string_view::npos) {
      p.length = static_cast<uint8_t>(max_len);
      return p;
    }
    auto len_text = text.substr(slash + 1);
    if (len_text.empty() || len_text.size() > 3) return std::nullopt;
    unsigned len = 0;
    for (char c : len_text) {
      if (c < '0' || c > '9') return std::nullopt;
      len = len * 10 + static_cast<unsigned>(c - '0');
    }
    if (len > max_len) return std::nullopt;
    p.length = static_cast<uint8_t>(len);
    return p;
  }
};

}  // namespace roam
