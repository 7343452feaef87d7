// A NETLINK_ROUTE socket bound to the given multicast groups (0: none, for a dump), the one
// the address watchers read. Returns the fd, or -1 with errno set.
#pragma once

#include <cstdint>

namespace roam {

int open_netlink_route_socket(uint32_t groups, bool blocking);

}  // namespace roam
