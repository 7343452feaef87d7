#include "tun/udp_link.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace roam {

UdpLink::UdpLink(uv_loop_t* loop, UdpLinkConfig config) : loop_(loop), config_(std::move(config)) {
  // The safest default that still works everywhere the link is used: a link sends each
  // destination to one endpoint and expects that endpoint's replies from the same socket
  // (roam-server and roam-client send and receive on their one bound socket), so the
  // routes name exactly the peers whose packets it has reason to accept. Anything else is
  // explicit (--udp-allow), including "any" for a node that takes peers from anywhere.
  if (config_.allow_any_peer) peers_.allow_any();
  for (const auto& route : config_.routes) peers_.allow_endpoint(route.endpoint);
  for (const auto& rule : config_.allow) peers_.allow(rule);
  rx_buffers_.resize(batch_size, std::vector<uint8_t>(config_.mtu + 1));
  rx_headers_.resize(batch_size);
  rx_iovecs_.resize(batch_size);
  rx_sources_.resize(batch_size);
  rx_views_.reserve(batch_size);
  tx_buffers_.resize(batch_size, std::vector<uint8_t>(config_.mtu));
  tx_headers_.resize(batch_size);
  tx_iovecs_.resize(batch_size);
}

UdpLink::~UdpLink() {
  close();
}

std::string UdpLink::describe() const {
  // Whom it listens to belongs in the one line that says the interface is up.
  return "udp:" + format_socket_address(config_.bind) + " (takes datagrams from: " + peers_.describe() + ")";
}

sockaddr_storage UdpLink::local_address() const {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (fd_ >= 0) getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  return addr;
}

Result<Ok, std::string> UdpLink::start(ReceiveBatchFn on_batch) {
  on_batch_ = std::move(on_batch);
  fd_ = socket(config_.bind.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return unexpected(std::string("udp link: socket: ") + std::strerror(errno));
  // Large socket buffers absorb a window's worth of bursts between loop iterations.
  int buffer_bytes = 8 * 1024 * 1024;
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &buffer_bytes, sizeof buffer_bytes) != 0)
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &buffer_bytes, sizeof buffer_bytes);
  if (setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &buffer_bytes, sizeof buffer_bytes) != 0)
    setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &buffer_bytes, sizeof buffer_bytes);
  if (bind(fd_, reinterpret_cast<const sockaddr*>(&config_.bind), config_.bind_len) != 0) {
    std::string error = "udp link: cannot bind " + format_socket_address(config_.bind) + ": " + std::strerror(errno);
    ::close(fd_);
    fd_ = -1;
    return unexpected(error);
  }
  if (int rc = uv_poll_init(loop_, poll_.get(), fd_); rc != 0)
    return unexpected(std::string("udp link: uv_poll_init: ") + uv_strerror(rc));
  poll_.mark_initialized();
  poll_.get()->data = this;
  uv_poll_start(poll_.get(), UV_READABLE, &UdpLink::on_readable);
  return Ok{};
}

void UdpLink::close() {
  poll_.close();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void UdpLink::on_readable(uv_poll_t* handle, int status, int /*events*/) noexcept {
  auto* self = static_cast<UdpLink*>(handle->data);
  if (self == nullptr || status < 0) return;
  self->read_batches();
}

void UdpLink::read_batches() {
  // Drain a bounded number of batches per wake-up, so one busy link cannot starve timers.
  for (int round = 0; round < 16 && fd_ >= 0; ++round) {
    for (size_t i = 0; i < batch_size; ++i) {
      rx_iovecs_[i] = {rx_buffers_[i].data(), rx_buffers_[i].size()};
      rx_headers_[i] = {};
      rx_headers_[i].msg_hdr.msg_iov = &rx_iovecs_[i];
      rx_headers_[i].msg_hdr.msg_iovlen = 1;
      rx_headers_[i].msg_hdr.msg_name = &rx_sources_[i];
      rx_headers_[i].msg_hdr.msg_namelen = sizeof rx_sources_[i];
    }
    int n = recvmmsg(fd_, rx_headers_.data(), batch_size, MSG_DONTWAIT, nullptr);
    if (n <= 0) {
      if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        ++counters_.rx_dropped;
        logger("link")->debug("udp link: recvmmsg: {}", std::strerror(errno));
      }
      return;
    }
    rx_views_.clear();
    for (int i = 0; i < n; ++i) {
      const auto& header = rx_headers_[static_cast<size_t>(i)];
      if ((header.msg_hdr.msg_flags & MSG_TRUNC) != 0 || header.msg_len > config_.mtu) {
        ++counters_.rx_dropped;  // larger than our MTU: not a packet we could have asked for
        continue;
      }
      if (!peers_.allows(rx_sources_[static_cast<size_t>(i)])) {
        // Not a peer: its packet could carry any inner source. Dropped before the stack sees it.
        ++counters_.rx_dropped;
        ++counters_.rx_foreign;
        if (auto log = logger("link"); log->should_log(spdlog::level::debug))
          log->debug("udp link: dropped a datagram from {} (not an allowed peer)",
                     format_socket_address(rx_sources_[static_cast<size_t>(i)]));
        continue;
      }
      ++counters_.rx_packets;
      counters_.rx_bytes += header.msg_len;
      rx_views_.emplace_back(rx_buffers_[static_cast<size_t>(i)].data(), header.msg_len);
    }
    if (!rx_views_.empty() && on_batch_) on_batch_(rx_views_);
    if (static_cast<size_t>(n) < batch_size) return;
  }
}

const UdpRoute* UdpLink::route_for(PacketView packet) const {
  auto destination = IpAddress::destination_of(packet);
  if (!destination) return nullptr;
  const UdpRoute* best = nullptr;
  for (const auto& route : config_.routes) {
    if (route.prefix.contains(*destination) && (best == nullptr || route.prefix.length > best->prefix.length))
      best = &route;
  }
  return best;
}

void UdpLink::send(PacketView packet) {
  const UdpRoute* route = route_for(packet);
  if (route == nullptr || packet.size() > config_.mtu || fd_ < 0) {
    ++counters_.tx_dropped;
    return;
  }
  if (tx_queued_ == batch_size) flush();
  size_t slot = tx_queued_++;
  std::memcpy(tx_buffers_[slot].data(), packet.data(), packet.size());
  tx_iovecs_[slot] = {tx_buffers_[slot].data(), packet.size()};
  tx_headers_[slot] = {};
  tx_headers_[slot].msg_hdr.msg_iov = &tx_iovecs_[slot];
  tx_headers_[slot].msg_hdr.msg_iovlen = 1;
  tx_headers_[slot].msg_hdr.msg_name = const_cast<sockaddr_storage*>(&route->endpoint);
  tx_headers_[slot].msg_hdr.msg_namelen = route->endpoint_len;
}

void UdpLink::flush() {
  size_t sent = 0;
  while (sent < tx_queued_ && fd_ >= 0) {
    int n = sendmmsg(fd_, tx_headers_.data() + sent, static_cast<unsigned>(tx_queued_ - sent), MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      // EAGAIN (socket buffer full) or an ICMP error from a peer not listening (ECONNREFUSED):
      // skip this datagram and carry on with the rest.
      ++counters_.tx_dropped;
      ++sent;
      continue;
    }
    for (int i = 0; i < n; ++i) {
      ++counters_.tx_packets;
      counters_.tx_bytes += tx_iovecs_[sent + static_cast<size_t>(i)].iov_len;
    }
    sent += static_cast<size_t>(n);
  }
  tx_queued_ = 0;
}

}  // namespace roam
