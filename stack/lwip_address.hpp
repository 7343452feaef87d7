// Conversions between IpAddress (ours, pure) and lwIP's ip_addr_t. Any thread.
#pragma once

#include <cstring>

#include "stack/lwip.hpp"
#include "base/ip_address.hpp"

namespace roam {

inline ip_addr_t to_lwip(const IpAddress& a) {
  ip_addr_t out;
  std::memset(&out, 0, sizeof out);
  if (a.version == 4) {
    IP_SET_TYPE_VAL(out, IPADDR_TYPE_V4);
    std::memcpy(&ip_2_ip4(&out)->addr, a.bytes.data(), 4);
  } else {
    IP_SET_TYPE_VAL(out, IPADDR_TYPE_V6);
    std::memcpy(ip_2_ip6(&out)->addr, a.bytes.data(), 16);
    ip6_addr_clear_zone(ip_2_ip6(&out));
  }
  return out;
}

inline IpAddress from_lwip(const ip_addr_t& a) {
  IpAddress out;
  if (IP_IS_V4_VAL(a)) {
    out.version = 4;
    std::memcpy(out.bytes.data(), &ip_2_ip4(&a)->addr, 4);
  } else {
    out.version = 6;
    std::memcpy(out.bytes.data(), ip_2_ip6(&a)->addr, 16);
  }
  return out;
}

}  // namespace roam
