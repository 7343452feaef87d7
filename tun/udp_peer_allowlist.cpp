#include "tun/udp_peer_allowlist.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace roam {

namespace {

std::optional<uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  // Port 0 is no sender's port; as a rule it would silently mean "any port".
  if (value == 0 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

}  // namespace

std::optional<UdpAllowText> parse_udp_allow(std::string_view text) {
  UdpAllowText out;
  if (text == "any") {
    out.any_peer = true;
    return out;
  }
  std::string_view prefix_text = text;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    prefix_text = text.substr(1, close - 1);
    auto rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return std::nullopt;
      port_text = rest.substr(1);
      if (port_text.empty()) return std::nullopt;
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    // Exactly one colon: IPv4 (or an IPv4 prefix) with a port. A bare IPv6 has two or more.
    auto colon = text.find(':');
    prefix_text = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (port_text.empty()) return std::nullopt;
  }
  auto prefix = IpPrefix::parse(prefix_text);
  if (!prefix) return std::nullopt;
  out.rule.prefix = *prefix;
  if (!port_text.empty()) {
    auto port = parse_port(port_text);
    if (!port) return std::nullopt;
    out.rule.port = *port;
  }
  return out;
}

std::optional<UdpSource> udp_source_of(const sockaddr_storage& addr) {
  UdpSource source;
  if (addr.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&addr);
    source.address.version = 4;
    std::memcpy(source.address.bytes.data(), &v4->sin_addr, 4);
    source.port = ntohs(v4->sin_port);
    return source;
  }
  if (addr.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    source.port = ntohs(v6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      source.address.version = 4;
      std::memcpy(source.address.bytes.data(), reinterpret_cast<const uint8_t*>(&v6->sin6_addr) + 12, 4);
    } else {
      source.address.version = 6;
      std::memcpy(source.address.bytes.data(), &v6->sin6_addr, 16);
    }
    return source;
  }
  return std::nullopt;
}

void UdpPeerAllowlist::allow_endpoint(const sockaddr_storage& endpoint) {
  auto source = udp_source_of(endpoint);
  if (!source) return;
  UdpPeerRule rule;
  rule.prefix.address = source->address;
  rule.prefix.length = static_cast<uint8_t>(source->address.version == 4 ? 32 : 128);
  rule.port = source->port;
  // Routes often share one peer (several prefixes behind one endpoint): keep the list short.
  for (const auto& existing : rules_)
    if (existing.port == rule.port && existing.prefix.length == rule.prefix.length &&
        existing.prefix.address == rule.prefix.address)
      return;
  rules_.push_back(rule);
}

bool UdpPeerAllowlist::allows(const sockaddr_storage& addr) const {
  if (any_) return true;
  auto source = udp_source_of(addr);
  if (!source) return false;
  for (const auto& rule : rules_)
    if ((rule.port == 0 || rule.port == source->port) && rule.prefix.contains(source->address)) return true;
  return false;
}

std::string UdpPeerAllowlist::describe() const {
  if (any_) return "any";
  if (rules_.empty()) return "none";
  std::string text;
  for (const auto& rule : rules_) {
    if (!text.empty()) text += ", ";
    unsigned full = rule.prefix.address.version == 4 ? 32u : 128u;
    std::string prefix = rule.prefix.address.to_string();
    if (rule.prefix.length != full) prefix += "/" + std::to_string(rule.prefix.length);
    if (rule.prefix.address.version == 6) prefix = "[" + prefix + "]";
    text += prefix + ":" + (rule.port == 0 ? std::string("*") : std::to_string(rule.port));
  }
  return text;
}

}  // namespace roam
