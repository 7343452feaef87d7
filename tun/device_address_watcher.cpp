#include "tun/device_address_watcher.hpp"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"
#include "tun/netlink_socket.hpp"

namespace roam {

namespace {
constexpr size_t datagram_bytes = 64 * 1024;

bool same_entry(const NetlinkAddress& a, const NetlinkAddress& b) {
  return a.local == b.local && a.peer.has_value() == b.peer.has_value() && (!a.peer || *a.peer == *b.peer);
}

bool send_dump(int fd, uint32_t sequence) {
  auto request = netlink_address_dump_request(sequence);
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  return sendto(fd, request.data(), request.size(), 0, reinterpret_cast<const sockaddr*>(&kernel), sizeof kernel) ==
         static_cast<ssize_t>(request.size());
}
}  // namespace

DeviceAddressWatcher::DeviceAddressWatcher(uv_loop_t* loop, std::string device, ChangeFn on_change)
    : loop_(loop), device_(std::move(device)), on_change_(std::move(on_change)), buffer_(datagram_bytes) {}

DeviceAddressWatcher::~DeviceAddressWatcher() {
  close();
}

void DeviceAddressWatcher::apply(std::vector<NetlinkAddress>& entries, const std::vector<NetlinkAddress>& batch,
                                 uint32_t interface) {
  for (const auto& entry : batch) {
    if (entry.interface != interface) continue;
    std::erase_if(entries, [&](const NetlinkAddress& known) { return same_entry(known, entry); });
    if (entry.added) entries.push_back(entry);  // newest last
  }
}

std::optional<IpAddress> DeviceAddressWatcher::node_address(const std::vector<NetlinkAddress>& entries,
                                                           uint8_t version) {
  for (auto it = entries.rbegin(); it != entries.rend(); ++it)
    if (it->peer && it->peer->version == version) return it->peer;
  return std::nullopt;
}

Result<std::optional<IpAddress>, std::string> DeviceAddressWatcher::read_node_address(const std::string& device,
                                                                                      uint8_t version) {
  uint32_t interface = if_nametoindex(device.c_str());
  if (interface == 0) return unexpected("no device " + device + ": " + std::strerror(errno));
  int fd = open_netlink_route_socket(0, true);
  if (fd < 0) return unexpected(std::string("netlink: ") + std::strerror(errno));
  timeval timeout{2, 0};  // the kernel answers a dump at once; this only bounds a failure
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::vector<NetlinkAddress> entries;
  std::string error;
  if (!send_dump(fd, 1)) error = std::string("netlink dump: ") + std::strerror(errno);
  std::vector<uint8_t> buffer(datagram_bytes);
  while (error.empty()) {
    ssize_t n = recv(fd, buffer.data(), buffer.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = std::string("netlink dump: ") + (n < 0 ? std::strerror(errno) : "socket closed");
      break;
    }
    auto batch = parse_netlink_addresses(std::span<const uint8_t>(buffer.data(), static_cast<size_t>(n)));
    apply(entries, batch.addresses, interface);
    if (batch.error != 0) error = std::string("netlink dump: ") + std::strerror(-batch.error);
    if (batch.done) break;
  }
  ::close(fd);
  if (!error.empty()) return unexpected(error);
  return node_address(entries, version);
}

Result<Ok, std::string> DeviceAddressWatcher::start(std::optional<IpAddress> initial4,
                                                    std::optional<IpAddress> initial6) {
  reported4_ = initial4;
  reported6_ = initial6;
  interface_ = if_nametoindex(device_.c_str());
  if (interface_ == 0) return unexpected("no device " + device_ + ": " + std::strerror(errno));
  fd_ = open_netlink_route_socket(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, false);
  if (fd_ < 0) return unexpected(std::string("netlink: ") + std::strerror(errno));
  if (int rc = uv_poll_init(loop_, poll_.get(), fd_); rc != 0) {
    ::close(fd_);
    fd_ = -1;
    return unexpected(std::string("netlink: uv_poll_init: ") + uv_strerror(rc));
  }
  poll_.mark_initialized();
  poll_.get()->data = this;
  uv_poll_start(poll_.get(), UV_READABLE, &DeviceAddressWatcher::on_readable);
  uv_unref(poll_.base());  // watching alone does not keep a node running
  // Subscribed first, then the dump: a change between the two is in one or the other.
  request_dump();
  logger("link")->info("watching the addresses of {} (the node's is the peer of a point-to-point address)",
                       device_);
  return Ok{};
}

void DeviceAddressWatcher::close() {
  poll_.close();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void DeviceAddressWatcher::request_dump() {
  if (fd_ >= 0 && !send_dump(fd_, ++sequence_))
    logger("link")->warn("{}: netlink address dump: {}", device_, std::strerror(errno));
}

void DeviceAddressWatcher::on_readable(uv_poll_t* handle, int status, int /*events*/) noexcept {
  auto* self = static_cast<DeviceAddressWatcher*>(handle->data);
  if (self == nullptr || status < 0) return;
  try {
    self->read_all();
  } catch (const std::exception& e) {
    logger("link")->error("{}: address watch: {}", self->device_, e.what());
  }
}

void DeviceAddressWatcher::read_all() {
  while (fd_ >= 0) {
    ssize_t n = recv(fd_, buffer_.data(), buffer_.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == ENOBUFS) {
      // Notifications were lost: what we know may be stale. Start over from a dump (an
      // empty list in between reports nothing: the node keeps its address meanwhile).
      ++counters_.resyncs;
      entries_.clear();
      request_dump();
      continue;
    }
    if (n <= 0) break;  // EAGAIN: all read
    auto batch = parse_netlink_addresses(std::span<const uint8_t>(buffer_.data(), static_cast<size_t>(n)));
    counters_.malformed += batch.malformed;
    for (const auto& entry : batch.addresses)
      if (entry.interface == interface_) {
        ++counters_.messages;
        logger("link")->debug("{}: address {} {}{}", device_, entry.added ? "added" : "removed",
                              entry.local.to_string(), entry.peer ? " peer " + entry.peer->to_string() : "");
      }
    apply(entries_, batch.addresses, interface_);
  }
  report(4);
  report(6);
}

void DeviceAddressWatcher::report(uint8_t version) {
  auto now = node_address(entries_, version);
  auto& reported = version == 4 ? reported4_ : reported6_;
  if (!now || (reported && *reported == *now)) return;
  reported = now;
  ++counters_.changes;
  if (on_change_) on_change_(*now);
}

}  // namespace roam
