#include "tun/netlink_address.hpp"

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>

namespace roam {

namespace {

template <typename T>
T read_struct(std::span<const uint8_t> bytes) {
  T value;
  std::memcpy(&value, bytes.data(), sizeof value);
  return value;
}

std::optional<IpAddress> address_from(std::span<const uint8_t> data, uint8_t family) {
  IpAddress address;
  address.version = family == AF_INET ? 4 : 6;
  if (data.size() != address.size()) return std::nullopt;
  std::memcpy(address.bytes.data(), data.data(), data.size());
  return address;
}

// One RTM_NEWADDR / RTM_DELADDR body (after the nlmsghdr); false when malformed.
bool parse_address(std::span<const uint8_t> body, bool added, NetlinkAddressBatch& out) {
  if (body.size() < sizeof(ifaddrmsg)) return false;
  auto header = read_struct<ifaddrmsg>(body);
  if (header.ifa_family != AF_INET && header.ifa_family != AF_INET6) {
    ++out.ignored;
    return true;
  }
  std::optional<IpAddress> local;
  std::optional<IpAddress> address;
  size_t at = NLMSG_ALIGN(sizeof(ifaddrmsg));
  while (at + sizeof(rtattr) <= body.size()) {
    auto attribute = read_struct<rtattr>(body.subspan(at));
    if (attribute.rta_len < sizeof(rtattr) || attribute.rta_len > body.size() - at) return false;
    auto data = body.subspan(at + RTA_LENGTH(0), attribute.rta_len - RTA_LENGTH(0));
    if (attribute.rta_type == IFA_LOCAL || attribute.rta_type == IFA_ADDRESS) {
      auto value = address_from(data, header.ifa_family);
      if (!value) return false;
      (attribute.rta_type == IFA_LOCAL ? local : address) = value;
    }
    at += RTA_ALIGN(attribute.rta_len);
  }
  if (!local && !address) return false;
  NetlinkAddress entry;
  entry.added = added;
  entry.interface = header.ifa_index;
  entry.prefix = header.ifa_prefixlen;
  entry.local = local ? *local : *address;
  if (local && address && !(*local == *address)) entry.peer = address;
  out.addresses.push_back(entry);
  return true;
}

}  // namespace

NetlinkAddressBatch parse_netlink_addresses(std::span<const uint8_t> datagram) {
  NetlinkAddressBatch out;
  size_t at = 0;
  while (at + sizeof(nlmsghdr) <= datagram.size()) {
    auto header = read_struct<nlmsghdr>(datagram.subspan(at));
    if (header.nlmsg_len < sizeof(nlmsghdr) || header.nlmsg_len > datagram.size() - at) {
      ++out.malformed;  // the rest of the datagram cannot be framed
      break;
    }
    auto body = datagram.subspan(at + NLMSG_HDRLEN, header.nlmsg_len - NLMSG_HDRLEN);
    switch (header.nlmsg_type) {
      case RTM_NEWADDR:
      case RTM_DELADDR:
        if (!parse_address(body, header.nlmsg_type == RTM_NEWADDR, out)) ++out.malformed;
        break;
      case NLMSG_DONE:
        out.done = true;
        break;
      case NLMSG_ERROR:
        if (body.size() >= sizeof(int)) {
          int code = read_struct<int>(body);
          if (code != 0) out.error = code;
        } else {
          ++out.malformed;
        }
        break;
      default:
        ++out.ignored;
        break;
    }
    at += NLMSG_ALIGN(header.nlmsg_len);
  }
  if (at < datagram.size() && datagram.size() - at < sizeof(nlmsghdr) && out.malformed == 0) ++out.malformed;
  return out;
}

std::vector<uint8_t> netlink_address_dump_request(uint32_t sequence) {
  struct {
    nlmsghdr header;
    ifaddrmsg body;
  } request{};
  request.header.nlmsg_len = NLMSG_LENGTH(sizeof(ifaddrmsg));
  request.header.nlmsg_type = RTM_GETADDR;
  request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  request.header.nlmsg_seq = sequence;
  request.body.ifa_family = AF_UNSPEC;
  std::vector<uint8_t> bytes(request.header.nlmsg_len);
  std::memcpy(bytes.data(), &request, bytes.size());
  return bytes;
}

}  // namespace roam
