#include "tun/tun_link.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "tun/log.hpp"

namespace roam {

TunLink::TunLink(uv_loop_t* loop, TunLinkConfig config) : loop_(loop), config_(std::move(config)) {
  // One spare byte per buffer: a read that fills it was larger than our MTU.
  rx_buffers_.resize(batch_size, std::vector<uint8_t>(config_.mtu + 1));
  rx_views_.reserve(batch_size);
}

TunLink::~TunLink() {
  close();
}

Result<Ok, std::string> TunLink::start(ReceiveBatchFn on_batch) {
  on_batch_ = std::move(on_batch);
  if (config_.name.empty() || config_.name.size() >= IFNAMSIZ)
    return unexpected("tun link: device name must be 1-" + std::to_string(IFNAMSIZ - 1) + " characters");
  fd_ = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) return unexpected(std::string("tun link: cannot open /dev/net/tun: ") + std::strerror(errno));
  ifreq request{};
  request.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::strncpy(request.ifr_name, config_.name.c_str(), IFNAMSIZ - 1);
  if (ioctl(fd_, TUNSETIFF, &request) != 0) {
    int error = errno;
    ::close(fd_);
    fd_ = -1;
    std::string message = "tun link: cannot attach to TUN device " + config_.name + ": " + std::strerror(error);
    if (error == EPERM)
      message += " (create it once as root: ip tuntap add mode tun user $USER name " + config_.name + ")";
    return unexpected(message);
  }
  bring_up_if_permitted();
  if (int rc = uv_poll_init(loop_, poll_.get(), fd_); rc != 0)
    return unexpected(std::string("tun link: uv_poll_init: ") + uv_strerror(rc));
  poll_.mark_initialized();
  poll_.get()->data = this;
  uv_poll_start(poll_.get(), UV_READABLE, &TunLink::on_readable);
  logger("link")->info("attached to TUN device {} (mtu {})", config_.name, config_.mtu);
  return Ok{};
}

// Sets the device up with our MTU when we may (CAP_NET_ADMIN). An unprivileged process on
// a persistent device relies on whoever created it, and that is fine.
void TunLink::bring_up_if_permitted() {
  int control = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (control < 0) return;
  ifreq request{};
  std::strncpy(request.ifr_name, config_.name.c_str(), IFNAMSIZ - 1);
  request.ifr_mtu = static_cast<int>(config_.mtu);
  if (ioctl(control, SIOCSIFMTU, &request) != 0)
    logger("link")->debug("tun {}: cannot set mtu: {}", config_.name, std::strerror(errno));
  if (ioctl(control, SIOCGIFFLAGS, &request) == 0 && (request.ifr_flags & IFF_UP) == 0) {
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
    if (ioctl(control, SIOCSIFFLAGS, &request) != 0)
      logger("link")->warn("tun {} is down and cannot be set up: {}", config_.name, std::strerror(errno));
  }
  ::close(control);
}

void TunLink::close() {
  poll_.close();
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void TunLink::on_readable(uv_poll_t* handle, int status, int /*events*/) noexcept {
  auto* self = static_cast<TunLink*>(handle->data);
  if (self == nullptr || status < 0) return;
  self->read_batch();
}

void TunLink::read_batch() {
  // A TUN fd returns one packet per read(); gather up to a batch per wake-up.
  rx_views_.clear();
  size_t slot = 0;
  while (slot < batch_size && fd_ >= 0) {
    auto& buffer = rx_buffers_[slot];
    ssize_t n = read(fd_, buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        ++counters_.rx_dropped;
        logger("link")->debug("tun {}: read: {}", config_.name, std::strerror(errno));
      }
      break;
    }
    if (n == 0) break;
    if (static_cast<size_t>(n) > config_.mtu) {
      ++counters_.rx_dropped;
      continue;
    }
    ++counters_.rx_packets;
    counters_.rx_bytes += static_cast<uint64_t>(n);
    rx_views_.emplace_back(buffer.data(), static_cast<size_t>(n));
    ++slot;
  }
  if (!rx_views_.empty() && on_batch_) on_batch_(rx_views_);
}

void TunLink::send(PacketView packet) {
  if (fd_ < 0 || packet.size() > config_.mtu) {
    ++counters_.tx_dropped;
    return;
  }
  ssize_t n;
  do {
    n = write(fd_, packet.data(), packet.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    ++counters_.tx_dropped;  // queue full (EAGAIN) or device gone: TCP will retransmit
    return;
  }
  ++counters_.tx_packets;
  counters_.tx_bytes += packet.size();
}

}  // namespace roam
