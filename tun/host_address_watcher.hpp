// HostAddressWatcher: tells its owner that some address on this host (any device, IPv4
// or IPv6) was added or removed, from rtnetlink's address groups (RTM_NEWADDR /
// RTM_DELADDR on a NETLINK_ROUTE socket polled by libuv). roam-client on a UDP link
// answers with a link rebind: its datagrams may leave from another address now, so the
// server must learn the endpoint they arrive from. Only "something changed" is reported,
// once per wake-up, whatever it was: the rebind is cheap and authenticated, so reporting
// too often costs nothing, and a netlink overflow (ENOBUFS) is reported as a change too.
// Owned by the app; loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/result.hpp"
#include "base/uv_handle.hpp"

namespace roam {

class HostAddressWatcher {
 public:
  using ChangeFn = std::function<void()>;
  HostAddressWatcher(uv_loop_t* loop, ChangeFn on_change);
  ~HostAddressWatcher();
  HostAddressWatcher(const HostAddressWatcher&) = delete;
  HostAddressWatcher& operator=(const HostAddressWatcher&) = delete;

  Result<Ok, std::string> start();
  void close();
  uint64_t changes() const { return changes_; }

 private:
  static void on_readable(uv_poll_t* handle, int status, int events) noexcept;
  void read_all();

  uv_loop_t* loop_;
  ChangeFn on_change_;
  int fd_ = -1;
  UvHandle<uv_poll_t> poll_;
  std::vector<uint8_t> buffer_;
  uint64_t changes_ = 0;
};

}  // namespace roam
