#include "tun/netlink_route.hpp"

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>

namespace roam {

namespace {

// A request under construction: header, family-specific body, then attributes.
class Request {
 public:
  Request(uint16_t type, uint32_t sequence, const void* body, size_t body_size) {
    bytes_.resize(NLMSG_HDRLEN + NLMSG_ALIGN(body_size));
    nlmsghdr header{};
    header.nlmsg_type = type;
    header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE;
    header.nlmsg_seq = sequence;
    std::memcpy(bytes_.data(), &header, sizeof header);
    std::memcpy(bytes_.data() + NLMSG_HDRLEN, body, body_size);
  }

  void attribute(uint16_t type, const void* data, size_t size) {
    size_t at = bytes_.size();
    bytes_.resize(at + RTA_SPACE(size));
    rtattr header{};
    header.rta_len = static_cast<unsigned short>(RTA_LENGTH(size));
    header.rta_type = type;
    std::memcpy(bytes_.data() + at, &header, sizeof header);
    std::memcpy(bytes_.data() + at + RTA_LENGTH(0), data, size);
  }

  std::vector<uint8_t> finish() {
    auto length = static_cast<uint32_t>(bytes_.size());
    std::memcpy(bytes_.data() + offsetof(nlmsghdr, nlmsg_len), &length, sizeof length);
    return std::move(bytes_);
  }

 private:
  std::vector<uint8_t> bytes_;
};

uint8_t family_of(const IpAddress& address) {
  return address.version == 4 ? AF_INET : AF_INET6;
}

}  // namespace

std::vector<uint8_t> netlink_add_address_request(uint32_t sequence, uint32_t interface, const IpAddress& address,
                                                 uint8_t prefix) {
  ifaddrmsg body{};
  body.ifa_family = family_of(address);
  body.ifa_prefixlen = prefix;
  body.ifa_scope = RT_SCOPE_UNIVERSE;
  body.ifa_index = interface;
  Request request(RTM_NEWADDR, sequence, &body, sizeof body);
  request.attribute(IFA_LOCAL, address.bytes.data(), address.size());
  request.attribute(IFA_ADDRESS, address.bytes.data(), address.size());
  return request.finish();
}

std::vector<uint8_t> netlink_add_route_request(uint32_t sequence, uint32_t interface, const IpPrefix& destination,
                                               const IpAddress& source) {
  rtmsg body{};
  body.rtm_family = family_of(destination.address);
  body.rtm_dst_len = destination.length;
  body.rtm_table = RT_TABLE_MAIN;
  body.rtm_protocol = RTPROT_STATIC;
  body.rtm_scope = RT_SCOPE_LINK;
  body.rtm_type = RTN_UNICAST;
  Request request(RTM_NEWROUTE, sequence, &body, sizeof body);
  request.attribute(RTA_DST, destination.address.bytes.data(), destination.address.size());
  request.attribute(RTA_OIF, &interface, sizeof interface);
  if (source.version == destination.address.version) request.attribute(RTA_PREFSRC, source.bytes.data(), source.size());
  return request.finish();
}

int netlink_ack_status(std::span<const uint8_t> datagram, uint32_t sequence) {
  size_t at = 0;
  while (at + sizeof(nlmsghdr) <= datagram.size()) {
    nlmsghdr header;
    std::memcpy(&header, datagram.data() + at, sizeof header);
    if (header.nlmsg_len < sizeof header || header.nlmsg_len > datagram.size() - at) return 1;
    if (header.nlmsg_type == NLMSG_ERROR && header.nlmsg_seq == sequence) {
      if (header.nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) return 1;
      nlmsgerr error;
      std::memcpy(&error, datagram.data() + at + NLMSG_HDRLEN, sizeof error);
      return error.error > 0 ? 1 : error.error;  // the kernel sends 0 or a negative errno
    }
    at += NLMSG_ALIGN(header.nlmsg_len);
  }
  return 1;
}

}  // namespace roam
