// Tests for tun/netlink_route: the RTM_NEWADDR / RTM_NEWROUTE requests roam-client
// --transparent sends (header, body and attributes read back field by field) and the
// reading of the kernel's acknowledgement (success, refusal, other sequence, truncated).
#include "tun/netlink_route.hpp"

#include <doctest/doctest.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>
#include <map>
#include <vector>

namespace {

roam::IpAddress ip(const char* text) {
  auto address = roam::IpAddress::parse(text);
  REQUIRE(address);
  return *address;
}

template <typename T>
T read_at(const std::vector<uint8_t>& bytes, size_t at) {
  REQUIRE(at + sizeof(T) <= bytes.size());
  T value;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

// Attribute type -> payload, from `at` to the end.
std::map<uint16_t, std::vector<uint8_t>> attributes(const std::vector<uint8_t>& bytes, size_t at) {
  std::map<uint16_t, std::vector<uint8_t>> out;
  while (at + sizeof(rtattr) <= bytes.size()) {
    auto attribute = read_at<rtattr>(bytes, at);
    REQUIRE(attribute.rta_len >= sizeof(rtattr));
    REQUIRE(at + attribute.rta_len <= bytes.size());
    out[attribute.rta_type].assign(bytes.begin() + static_cast<long>(at + RTA_LENGTH(0)),
                                   bytes.begin() + static_cast<long>(at + attribute.rta_len));
    at += RTA_ALIGN(attribute.rta_len);
  }
  CHECK(at == bytes.size());
  return out;
}

std::vector<uint8_t> bytes_of(const roam::IpAddress& address) {
  return {address.bytes.begin(), address.bytes.begin() + static_cast<long>(address.size())};
}

std::vector<uint8_t> ack(uint32_t sequence, int error, size_t cut = 0) {
  std::vector<uint8_t> out(NLMSG_LENGTH(sizeof(nlmsgerr)));
  nlmsghdr header{};
  header.nlmsg_len = static_cast<uint32_t>(out.size());
  header.nlmsg_type = NLMSG_ERROR;
  header.nlmsg_seq = sequence;
  nlmsgerr body{};
  body.error = error;
  std::memcpy(out.data(), &header, sizeof header);
  std::memcpy(out.data() + NLMSG_HDRLEN, &body, sizeof body);
  out.resize(out.size() - cut);
  return out;
}

}  // namespace

TEST_CASE("netlink_add_address_request: RTM_NEWADDR of a host address, acked") {
  auto bytes = roam::netlink_add_address_request(7, 42, ip("169.254.77.1"), 32);
  auto header = read_at<nlmsghdr>(bytes, 0);
  CHECK(header.nlmsg_len == bytes.size());
  CHECK(header.nlmsg_type == RTM_NEWADDR);
  CHECK(header.nlmsg_seq == 7);
  CHECK((header.nlmsg_flags & (NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)) ==
        (NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE));
  auto body = read_at<ifaddrmsg>(bytes, NLMSG_HDRLEN);
  CHECK(body.ifa_family == AF_INET);
  CHECK(body.ifa_prefixlen == 32);
  CHECK(body.ifa_index == 42);
  auto found = attributes(bytes, NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifaddrmsg)));
  CHECK(found[IFA_LOCAL] == bytes_of(ip("169.254.77.1")));
  CHECK(found[IFA_ADDRESS] == bytes_of(ip("169.254.77.1")));
}

TEST_CASE("netlink_add_route_request: RTM_NEWROUTE through the device with a preferred source") {
  auto bytes = roam::netlink_add_route_request(9, 42, *roam::IpPrefix::parse("198.18.12.0/24"), ip("169.254.77.1"));
  auto header = read_at<nlmsghdr>(bytes, 0);
  CHECK(header.nlmsg_len == bytes.size());
  CHECK(header.nlmsg_type == RTM_NEWROUTE);
  CHECK(header.nlmsg_seq == 9);
  auto body = read_at<rtmsg>(bytes, NLMSG_HDRLEN);
  CHECK(body.rtm_family == AF_INET);
  CHECK(body.rtm_dst_len == 24);
  CHECK(body.rtm_table == RT_TABLE_MAIN);
  CHECK(body.rtm_scope == RT_SCOPE_LINK);
  CHECK(body.rtm_type == RTN_UNICAST);
  auto found = attributes(bytes, NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(rtmsg)));
  CHECK(found[RTA_DST] == bytes_of(ip("198.18.12.0")));
  uint32_t oif = 0;
  REQUIRE(found[RTA_OIF].size() == 4);
  std::memcpy(&oif, found[RTA_OIF].data(), 4);
  CHECK(oif == 42);
  CHECK(found[RTA_PREFSRC] == bytes_of(ip("169.254.77.1")));
}

TEST_CASE("netlink_ack_status: success, refusal, another request's answer, truncation") {
  CHECK(roam::netlink_ack_status(ack(3, 0), 3) == 0);
  CHECK(roam::netlink_ack_status(ack(3, -EEXIST), 3) == -EEXIST);
  CHECK(roam::netlink_ack_status(ack(4, 0), 3) == 1);
  for (size_t cut = 1; cut < NLMSG_LENGTH(sizeof(nlmsgerr)); ++cut)
    CHECK(roam::netlink_ack_status(ack(3, 0, cut), 3) == 1);
  CHECK(roam::netlink_ack_status({}, 3) == 1);
}
