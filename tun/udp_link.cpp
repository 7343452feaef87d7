#include "tun/udp_link.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sock_diag.h>
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
  tx_names_.resize(batch_size);
}

UdpLink::~UdpLink() {
  close();
}

std::string UdpLink::describe() const {
  // Whom it listens to belongs in the one line that says the interface is up.
  return "udp:" + format_socket_address(config_.bind) + " (takes datagrams from: " + peers_.describe() +
         (config_.roam ? "; link rebinds for " + config_.roam->describe() : std::string()) + ")";
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

bool UdpLink::set_sequence_filter(std::span<const SequenceFilterFlow> flows) {
  if (fd_ < 0) return false;
  if (flows.empty()) {
    detach_sequence_filter();
    return true;
  }
  // The kernel charges a filter to the socket's option memory (optmem_max), the old and
  // the new one together while it replaces one: when it refuses, the first half of the
  // flows (the busiest, as the caller orders them) may still fit, or a quarter...
  for (size_t count = flows.size(); count > 0; count /= 2) {
    auto program = build_sequence_filter(flows.first(count));
    sock_fprog fprog{static_cast<unsigned short>(program.size()), program.data()};
    if (setsockopt(fd_, SOL_SOCKET, SO_ATTACH_FILTER, &fprog, sizeof fprog) == 0) {
      if (count < flows.size()) {
        uint64_t suppressed = 0;
        if (filter_refusal_log_.allow(suppressed))
          logger("link")->info("udp link: the kernel took a sequence filter for {} of {} flows ({} more)", count,
                               flows.size(), suppressed);
      }
      sequence_filter_attached_ = true;
      return true;
    }
    const int error = errno;  // before the logger, which may set it
    if (error == ENOMEM && count > 1) continue;
    // The previous filter must not stay: its ranges would fall behind the connections
    // and drop their real segments. Without one, the Node's own check still judges all.
    detach_sequence_filter();
    uint64_t suppressed = 0;
    if (filter_refusal_log_.allow(suppressed))
      logger("link")->warn("udp link: the kernel refused the sequence filter ({} instructions): {} ({} more)",
                           program.size(), std::strerror(error), suppressed);
    return false;
  }
  return false;
}

void UdpLink::detach_sequence_filter() {
  // Detaching a filter that is not there fails (ENOENT): only detach ours.
  int unused = 0;  // the kernel wants an int-sized value even here
  if (sequence_filter_attached_) setsockopt(fd_, SOL_SOCKET, SO_DETACH_FILTER, &unused, sizeof unused);
  sequence_filter_attached_ = false;
}

void UdpLink::sample_kernel_counters() {
  if (fd_ < 0) return;
  uint32_t meminfo[SK_MEMINFO_VARS] = {};
  socklen_t len = sizeof meminfo;
  if (getsockopt(fd_, SOL_SOCKET, SO_MEMINFO, meminfo, &len) == 0 && len > SK_MEMINFO_DROPS * sizeof(uint32_t))
    counters_.rx_dropped_kernel = meminfo[SK_MEMINFO_DROPS];
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
      PacketView datagram(rx_buffers_[static_cast<size_t>(i)].data(), header.msg_len);
      if (is_link_rebind(datagram)) {
        // Before the allowlist: a rebind comes from the endpoint that is not allowed yet.
        ++counters_.rx_dropped;  // never a packet for the stack
        on_rebind(datagram, rx_sources_[static_cast<size_t>(i)]);
        continue;
      }
      if (!peers_.allows(rx_sources_[static_cast<size_t>(i)]) &&
          !(config_.roam && config_.roam->allows(rx_sources_[static_cast<size_t>(i)], datagram))) {
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

void UdpLink::on_rebind(PacketView datagram, const sockaddr_storage& source) {
  if (!config_.roam) {
    ++rebinds_ignored_;
    return;
  }
  uint64_t now = uv_now(loop_);
  auto verdict = config_.roam->on_rebind(datagram, source, now);
  if (verdict == RebindVerdict::unchanged) return;
  auto log = logger("link");
  if (verdict == RebindVerdict::applied) {
    auto rebind = decode_link_rebind(datagram);
    log->info("udp link: {} is now at {} (link rebind)", rebind ? rebind->inner.to_string() : "?",
              format_socket_address(source));
    return;
  }
  // Refusals: at most one line a second (anyone can send them).
  uint64_t suppressed = 0;
  if (rebind_refusal_log_.allow(suppressed))
    log->info("udp link: dropped a link rebind from {}: {} ({} more not logged)", format_socket_address(source),
              rebind_verdict_name(verdict), suppressed);
}

const UdpRoute* UdpLink::route_for(const IpAddress& destination) const {
  const UdpRoute* best = nullptr;
  for (const auto& route : config_.routes) {
    if (route.prefix.contains(destination) && (best == nullptr || route.prefix.length > best->prefix.length))
      best = &route;
  }
  return best;
}

std::optional<sockaddr_storage> UdpLink::endpoint_for(const IpAddress& inner) const {
  if (config_.roam)
    if (const auto* roamed = config_.roam->endpoint_for(inner)) return *roamed;
  const UdpRoute* route = route_for(inner);
  if (route == nullptr) return std::nullopt;
  return route->endpoint;
}

bool UdpLink::send_datagram(std::span<const uint8_t> datagram, const sockaddr_storage& to) {
  if (fd_ < 0) return false;
  socklen_t len = to.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  return sendto(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&to), len) ==
         static_cast<ssize_t>(datagram.size());
}

void UdpLink::send(PacketView packet) {
  auto destination = IpAddress::destination_of(packet);
  const sockaddr_storage* endpoint = nullptr;
  socklen_t endpoint_len = 0;
  if (destination) {
    if (config_.roam) endpoint = config_.roam->endpoint_for(*destination);
    if (endpoint != nullptr) {
      endpoint_len = endpoint->ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    } else if (const UdpRoute* route = route_for(*destination)) {
      endpoint = &route->endpoint;
      endpoint_len = route->endpoint_len;
    }
  }
  if (endpoint == nullptr || packet.size() > config_.mtu || fd_ < 0) {
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
  // Copied: a rebind may move the roamed endpoint before flush().
  tx_names_[slot] = *endpoint;
  tx_headers_[slot].msg_hdr.msg_name = &tx_names_[slot];
  tx_headers_[slot].msg_hdr.msg_namelen = endpoint_len;
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
