#include "tun/device_routes.hpp"

#include <net/if.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "tun/netlink_route.hpp"
#include "tun/netlink_socket.hpp"

namespace roam {

namespace {

// Sends one request and waits for its ack: "" on success, else why not.
std::string exchange(int fd, const std::vector<uint8_t>& request, uint32_t sequence) {
  if (::send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size()))
    return std::string("send: ") + std::strerror(errno);
  std::array<uint8_t, 8192> answer{};
  for (;;) {
    ssize_t got = ::recv(fd, answer.data(), answer.size(), 0);
    if (got < 0) return errno == EAGAIN ? std::string("no answer from the kernel") : std::strerror(errno);
    int status = netlink_ack_status(std::span<const uint8_t>(answer.data(), static_cast<size_t>(got)), sequence);
    if (status == 0) return "";
    if (status < 0) return std::strerror(-status);
  }
}

}  // namespace

Result<Ok, std::string> route_prefixes_into_device(const std::string& device, const IpAddress& kernel_address,
                                                   const std::vector<IpPrefix>& prefixes) {
  unsigned index = if_nametoindex(device.c_str());
  if (index == 0) return unexpected("no device " + device + ": " + std::strerror(errno));
  int fd = open_netlink_route_socket(0, true);
  if (fd < 0) return unexpected(std::string("netlink socket: ") + std::strerror(errno));
  timeval timeout{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  uint32_t sequence = 1;
  const uint8_t host = kernel_address.version == 4 ? 32 : 128;
  std::string failed = exchange(fd, netlink_add_address_request(sequence, index, kernel_address, host), sequence);
  if (!failed.empty()) {
    ::close(fd);
    return unexpected("cannot give " + device + " the address " + kernel_address.to_string() + ": " + failed);
  }
  for (const auto& prefix : prefixes) {
    ++sequence;
    failed = exchange(fd, netlink_add_route_request(sequence, index, prefix, kernel_address), sequence);
    if (!failed.empty()) {
      ::close(fd);
      return unexpected("cannot route " + prefix.address.to_string() + "/" + std::to_string(prefix.length) + " into " +
                        device + ": " + failed);
    }
  }
  ::close(fd);
  return Ok{};
}

}  // namespace roam
