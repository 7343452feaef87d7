// Tests for tun/netlink_address (rtnetlink address messages: known bytes, every
// truncation) and the rule DeviceAddressWatcher applies to them (the node's address is the
// newest point-to-point peer on the device; removing it falls back, an empty device names
// none).
#include "tun/netlink_address.hpp"

#include <doctest/doctest.h>
#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <cstring>
#include <vector>

#include "tun/device_address_watcher.hpp"

namespace {

using roam::IpAddress;
using roam::NetlinkAddress;

IpAddress ip(const char* text) {
  auto address = IpAddress::parse(text);
  REQUIRE(address);
  return *address;
}

void append_attribute(std::vector<uint8_t>& out, uint16_t type, const IpAddress& address) {
  rtattr attribute{};
  attribute.rta_len = static_cast<unsigned short>(RTA_LENGTH(address.size()));
  attribute.rta_type = type;
  size_t at = out.size();
  out.resize(at + RTA_SPACE(address.size()));
  std::memcpy(out.data() + at, &attribute, sizeof attribute);
  std::memcpy(out.data() + at + RTA_LENGTH(0), address.bytes.data(), address.size());
}

// One RTM_NEWADDR / RTM_DELADDR message as the kernel builds it.
std::vector<uint8_t> address_message(uint16_t type, uint32_t interface, const IpAddress& local,
                                     const IpAddress& address) {
  std::vector<uint8_t> body(NLMSG_ALIGN(sizeof(ifaddrmsg)));
  ifaddrmsg header{};
  header.ifa_family = local.version == 4 ? AF_INET : AF_INET6;
  header.ifa_prefixlen = local.version == 4 ? 32 : 128;
  header.ifa_index = interface;
  std::memcpy(body.data(), &header, sizeof header);
  append_attribute(body, IFA_ADDRESS, address);
  append_attribute(body, IFA_LOCAL, local);
  nlmsghdr message{};
  message.nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(body.size()));
  message.nlmsg_type = type;
  std::vector<uint8_t> out(NLMSG_HDRLEN);
  std::memcpy(out.data(), &message, sizeof message);
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

std::vector<uint8_t> done_message() {
  nlmsghdr message{};
  message.nlmsg_len = NLMSG_LENGTH(sizeof(int));
  message.nlmsg_type = NLMSG_DONE;
  std::vector<uint8_t> out(message.nlmsg_len);
  std::memcpy(out.data(), &message, sizeof message);
  return out;
}

}  // namespace

TEST_CASE("a point-to-point address names its peer as the node's address; a plain one names none") {
  auto datagram = address_message(RTM_NEWADDR, 7, ip("198.18.11.1"), ip("198.18.11.2"));
  auto plain = address_message(RTM_NEWADDR, 7, ip("198.18.1.1"), ip("198.18.1.1"));
  datagram.insert(datagram.end(), plain.begin(), plain.end());
  auto done = done_message();
  datagram.insert(datagram.end(), done.begin(), done.end());
  auto batch = roam::parse_netlink_addresses(datagram);
  CHECK(batch.malformed == 0);
  CHECK(batch.done);
  REQUIRE(batch.addresses.size() == 2);
  CHECK(batch.addresses[0].added);
  CHECK(batch.addresses[0].interface == 7);
  CHECK(batch.addresses[0].local == ip("198.18.11.1"));
  REQUIRE(batch.addresses[0].peer);
  CHECK(*batch.addresses[0].peer == ip("198.18.11.2"));
  CHECK_FALSE(batch.addresses[1].peer);
}

TEST_CASE("IPv6 and removals parse") {
  auto batch = roam::parse_netlink_addresses(address_message(RTM_DELADDR, 3, ip("2001:db8::1"), ip("2001:db8::2")));
  REQUIRE(batch.addresses.size() == 1);
  CHECK_FALSE(batch.addresses[0].added);
  REQUIRE(batch.addresses[0].peer);
  CHECK(*batch.addresses[0].peer == ip("2001:db8::2"));
}

TEST_CASE("every truncation of an address message is malformed or incomplete, never an address") {
  auto message = address_message(RTM_NEWADDR, 7, ip("198.18.11.1"), ip("198.18.11.2"));
  for (size_t size = 0; size < message.size(); ++size) {
    std::vector<uint8_t> cut(message.begin(), message.begin() + static_cast<long>(size));
    auto batch = roam::parse_netlink_addresses(cut);
    CHECK(batch.addresses.empty());
    if (size > 0) CHECK(batch.malformed > 0);
  }
  // An attribute claiming more than the message holds.
  auto lying = message;
  size_t attribute_at = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(ifaddrmsg));
  rtattr attribute{};
  std::memcpy(&attribute, lying.data() + attribute_at, sizeof attribute);
  attribute.rta_len = 200;
  std::memcpy(lying.data() + attribute_at, &attribute, sizeof attribute);
  auto batch = roam::parse_netlink_addresses(lying);
  CHECK(batch.addresses.empty());
  CHECK(batch.malformed == 1);
}

TEST_CASE("the node's address is the newest peer on the device; other devices do not count") {
  std::vector<NetlinkAddress> entries;
  auto parse = [](uint16_t type, uint32_t interface, const char* local, const char* peer) {
    return roam::parse_netlink_addresses(address_message(type, interface, ip(local), ip(peer))).addresses;
  };
  using roam::DeviceAddressWatcher;
  DeviceAddressWatcher::apply(entries, parse(RTM_NEWADDR, 7, "198.18.11.1", "198.18.11.2"), 7);
  CHECK(*DeviceAddressWatcher::node_address(entries, 4) == ip("198.18.11.2"));
  DeviceAddressWatcher::apply(entries, parse(RTM_NEWADDR, 8, "198.18.31.1", "198.18.31.2"), 7);
  CHECK(*DeviceAddressWatcher::node_address(entries, 4) == ip("198.18.11.2"));
  // Readdressed: the new one is added first, then the old one removed.
  DeviceAddressWatcher::apply(entries, parse(RTM_NEWADDR, 7, "198.18.21.1", "198.18.21.2"), 7);
  CHECK(*DeviceAddressWatcher::node_address(entries, 4) == ip("198.18.21.2"));
  DeviceAddressWatcher::apply(entries, parse(RTM_DELADDR, 7, "198.18.11.1", "198.18.11.2"), 7);
  CHECK(*DeviceAddressWatcher::node_address(entries, 4) == ip("198.18.21.2"));
  CHECK_FALSE(DeviceAddressWatcher::node_address(entries, 6));
  DeviceAddressWatcher::apply(entries, parse(RTM_DELADDR, 7, "198.18.21.1", "198.18.21.2"), 7);
  CHECK_FALSE(DeviceAddressWatcher::node_address(entries, 4));
}
