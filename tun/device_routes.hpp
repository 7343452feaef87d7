// Steers prefixes into a TUN device: gives it a kernel-side address and adds one route per
// prefix through it (rtnetlink, tun/netlink_route), in the network namespace this process
// runs in. Needs CAP_NET_ADMIN. Blocking (start-up only: one request and its ack at a time,
// each answered within a second or failed). The routes and the address go away with the
// device when its last file descriptor closes (a device this process created).
#pragma once

#include <string>
#include <vector>

#include "base/ip_address.hpp"
#include "base/result.hpp"

namespace roam {

Result<Ok, std::string> route_prefixes_into_device(const std::string& device, const IpAddress& kernel_address,
                                                   const std::vector<IpPrefix>& prefixes);

}  // namespace roam
