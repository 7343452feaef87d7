#include "tun/netlink_socket.hpp"

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

namespace roam {

int open_netlink_route_socket(uint32_t groups, bool blocking) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK), NETLINK_ROUTE);
  if (fd < 0) return -1;
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  local.nl_groups = groups;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&local), sizeof local) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace roam
