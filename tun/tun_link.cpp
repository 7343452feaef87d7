#include "tun/tun_link.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>

#include "stack/wire/virtio_net_header.hpp"
#include "base/log.hpp"

namespace roam {

TunLink::TunLink(uv_loop_t* loop, TunLinkConfig config) : loop_(loop), config_(std::move(config)) {
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
  request.ifr_flags = static_cast<short>(IFF_TUN | IFF_NO_PI | (config_.offload ? IFF_VNET_HDR : 0));
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
  // A filter program a killed process left on a persistent device would go on judging
  // SYNs for nobody (tun/tun_syn_check.hpp): ours is attached when asked for.
  TunSynCheck::detach_any(fd_);
  vnet_header_ = config_.offload;
  if (vnet_header_) enable_offloads();
  // One spare byte per buffer: a read that fills it was larger than we accept.
  const size_t largest = (tso_ ? max_offload_packet : config_.mtu) +
                         (vnet_header_ ? wire::virtio_net_header_size : 0);
  rx_buffers_.assign(batch_size, std::vector<uint8_t>(largest + 1));
  bring_up_if_permitted();
  if (int rc = uv_poll_init(loop_, poll_.get(), fd_); rc != 0)
    return unexpected(std::string("tun link: uv_poll_init: ") + uv_strerror(rc));
  poll_.mark_initialized();
  poll_.get()->data = this;
  if (config_.uring) {
    std::string why;
    uring_ = UringBatchReader::create(fd_, batch_size, why);
    if (uring_)
      uring_results_.assign(batch_size, 0);
    else
      logger("link")->info("tun {}: no io_uring ({}): one read() per packet", config_.name, why);
  }
  uv_poll_start(poll_.get(), UV_READABLE, &TunLink::on_readable);
  logger("link")->info("attached to TUN device {} (mtu {}, offloads {}, reads {})", config_.name, config_.mtu,
                       tso_ ? "checksum+tso" : "off", uring_ ? "batched with io_uring" : "one read() each");
  return Ok{};
}

// Asks for checksum offload and TSO. A kernel that refuses leaves the link working without
// them (the header stays, all zero on the way out): lwIP then builds MTU-sized packets
// with full checksums as it does without IFF_VNET_HDR.
void TunLink::enable_offloads() {
  int header_size = static_cast<int>(wire::virtio_net_header_size);
  if (ioctl(fd_, TUNSETVNETHDRSZ, &header_size) != 0) {
    logger("link")->warn("tun {}: TUNSETVNETHDRSZ: {}", config_.name, std::strerror(errno));
    return;
  }
  const unsigned long features = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
  if (ioctl(fd_, TUNSETOFFLOAD, features) != 0) {
    logger("link")->info("tun {}: kernel refused TSO offloads ({}): sending MTU-sized packets",
                         config_.name, std::strerror(errno));
    return;
  }
  tso_ = true;
}

LinkOffloads TunLink::offloads() const {
  if (!tso_) return {};
  // Room for the IPv6 (40) and TCP (20) headers plus 40 bytes of TCP options in 64 KiB.
  return {max_offload_packet - 100, true};
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

TunSynCheck* TunLink::kernel_syn_check(std::string& why) {
  if (syn_check_) return syn_check_.get();
  if (fd_ < 0) {
    why = "the TUN device is not open";
    return nullptr;
  }
  if (!syn_check_refused_.empty()) {
    why = syn_check_refused_;
    return nullptr;
  }
  auto check = TunSynCheck::create({}, why);
  if (check && !check->attach(fd_, why)) check.reset();
  if (!check) {
    syn_check_refused_ = why;
    return nullptr;
  }
  syn_check_ = std::move(check);
  return syn_check_.get();
}

void TunLink::close() {
  poll_.close();
  // Off the device before its fd closes (a persistent device would keep judging SYNs for
  // nobody); the object itself lives as long as the link: SynDefense may still read it.
  if (syn_check_ && fd_ >= 0) {
    syn_check_->set_active(false);
    syn_check_->detach(fd_);
  }
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
  if (uring_) {
    read_batch_uring();
    return;
  }
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
    if (take_packet(slot, static_cast<size_t>(n))) ++slot;  // else the slot is free again
  }
  if (!rx_views_.empty() && on_batch_) on_batch_(rx_views_);
}

void TunLink::read_batch_uring() {
  rx_views_.clear();
  const size_t asked = uring_reads_;
  if (!uring_->read(rx_buffers_, asked, uring_results_)) {
    stop_uring("the ring failed");  // should not happen once set up
    read_batch();
    return;
  }
  size_t found = 0;
  int32_t unsupported = 0;
  for (size_t slot = 0; slot < asked; ++slot) {
    const int32_t n = uring_results_[slot];
    // A kernel whose TUN reads cannot be non-blocking under io_uring: nothing was read.
    if (n == -EOPNOTSUPP || n == -EINVAL) unsupported = n;
    if (n < 0) {
      if (n != -EAGAIN && n != -EINTR && n != unsupported) {
        ++counters_.rx_dropped;
        logger("link")->debug("tun {}: read: {}", config_.name, std::strerror(-n));
      }
      continue;
    }
    if (n == 0) continue;
    ++found;
    (void)take_packet(slot, static_cast<size_t>(n));  // each slot its own buffer: none to free
  }
  uring_reads_ = std::clamp(2 * found, min_uring_reads, batch_size);
  if (!rx_views_.empty() && on_batch_) on_batch_(rx_views_);
  // After delivering what was read; the poll is level-triggered: read() takes the rest.
  if (unsupported != 0) stop_uring(std::strerror(-unsupported));
}

void TunLink::stop_uring(const std::string& why) {
  logger("link")->info("tun {}: io_uring reads unusable ({}): one read() per packet from now on", config_.name, why);
  uring_.reset();
}

bool TunLink::take_packet(size_t slot, size_t n) {
  std::span<uint8_t> packet(rx_buffers_[slot].data(), n);
  if (vnet_header_) {
    // From the kernel, but still checked: a header we cannot honour drops the packet.
    auto header = wire::parse_virtio_net_header(packet);
    if (!header) {
      ++counters_.rx_dropped;
      return false;
    }
    packet = packet.subspan(wire::virtio_net_header_size);
    if (!wire::complete_checksum(*header, packet)) {
      ++counters_.rx_dropped;
      return false;
    }
  }
  if (packet.size() > (tso_ ? max_offload_packet : config_.mtu)) {
    ++counters_.rx_dropped;
    return false;
  }
  ++counters_.rx_packets;
  counters_.rx_bytes += packet.size();
  rx_views_.emplace_back(packet.data(), packet.size());
  return true;
}

void TunLink::send(PacketView packet) {
  if (fd_ < 0 || packet.size() > config_.mtu) {
    ++counters_.tx_dropped;
    return;
  }
  write_packet(packet, static_cast<uint16_t>(config_.mtu));  // within the MTU: never segmented
}

void TunLink::send_segmented(PacketView packet, uint16_t mss) {
  if (fd_ < 0 || !tso_ || packet.size() > max_offload_packet) {
    ++counters_.tx_dropped;
    return;
  }
  write_packet(packet, mss);
}

// One write per packet (a TUN fd has no batched write); with TSO a packet is up to 64 KiB.
// The TCP checksum field is replaced, without copying the packet, by the pseudo-header
// sum the kernel expects with NEEDS_CSUM: the iovec skips lwIP's two bytes.
void TunLink::write_packet(PacketView packet, uint16_t mss) {
  std::array<uint8_t, wire::virtio_net_header_size> header{};
  std::array<uint8_t, 2> checksum{};
  std::array<iovec, 4> iov{};
  int count = 0;
  auto add = [&](const uint8_t* data, size_t size) {
    iov[static_cast<size_t>(count++)] = {const_cast<uint8_t*>(data), size};
  };
  if (vnet_header_) {
    wire::VirtioNetHeader fields;
    std::optional<uint16_t> partial;
    size_t checksum_at = 0;
    if (tso_) {
      auto plan = wire::plan_offload(packet, mss);
      if (!plan) {
        ++counters_.tx_dropped;  // lwIP built something we cannot describe: a bug, not traffic
        logger("link")->debug("tun {}: cannot offload packet: {}", config_.name, wire::to_string(plan.error()));
        return;
      }
      fields = plan->header;
      partial = plan->partial_checksum;
      checksum_at = plan->checksum_at;
    }
    wire::emit_virtio_net_header(fields, header);
    add(header.data(), header.size());
    if (partial) {
      checksum = {static_cast<uint8_t>(*partial >> 8), static_cast<uint8_t>(*partial)};
      add(packet.data(), checksum_at);
      add(checksum.data(), checksum.size());
      add(packet.data() + checksum_at + 2, packet.size() - checksum_at - 2);
    } else {
      add(packet.data(), packet.size());
    }
  } else {
    add(packet.data(), packet.size());
  }
  ssize_t n;
  do {
    n = writev(fd_, iov.data(), count);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    ++counters_.tx_dropped;  // queue full (EAGAIN) or device gone: TCP will retransmit
    return;
  }
  ++counters_.tx_packets;
  counters_.tx_bytes += packet.size();
}

}  // namespace roam
