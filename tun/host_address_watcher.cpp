#include "tun/host_address_watcher.hpp"

#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <span>

#include "tun/netlink_address.hpp"
#include "tun/netlink_socket.hpp"

namespace roam {

HostAddressWatcher::HostAddressWatcher(uv_loop_t* loop, ChangeFn on_change)
    : loop_(loop), on_change_(std::move(on_change)), buffer_(64 * 1024) {}

HostAddressWatcher::~HostAddressWatcher() {
  close();
}

Result<Ok, std::string> HostAddressWatcher::start() {
  fd_ = open_netlink_route_socket(RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR, false);
  if (fd_ < 0) return unexpected(std::string("netlink: ") + std::strerror(errno));
  if (int rc = uv_poll_init(loop_, poll_.get(), fd_); rc != 0) {
    ::close(fd_);
    fd_ = -1;
    return unexpected(std::string("uv_poll_init: ") + uv_strerror(rc));
  }
  poll_.mark_initialized();
  poll_.get()->data = this;
  uv_poll_start(poll_.get(), UV_READABLE, &HostAddressWatcher::on_readable);
  // A watcher must not keep the loop alive on its own.
  uv_unref(poll_.base());
  return Ok{};
}

void HostAddressWatcher::close() {
  poll_.close();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void HostAddressWatcher::on_readable(uv_poll_t* handle, int status, int /*events*/) noexcept {
  auto* self = static_cast<HostAddressWatcher*>(handle->data);
  if (self == nullptr || status < 0) return;
  self->read_all();
}

void HostAddressWatcher::read_all() {
  bool changed = false;
  for (int round = 0; round < 64 && fd_ >= 0; ++round) {
    ssize_t n = recv(fd_, buffer_.data(), buffer_.size(), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == ENOBUFS) {
        changed = true;  // we missed some: whatever they were, a rebind covers them
        continue;
      }
      break;
    }
    if (n == 0) break;
    auto batch = parse_netlink_addresses(std::span<const uint8_t>(buffer_.data(), static_cast<size_t>(n)));
    if (!batch.addresses.empty()) changed = true;
  }
  if (!changed) return;
  ++changes_;
  if (on_change_) on_change_();
}

}  // namespace roam
