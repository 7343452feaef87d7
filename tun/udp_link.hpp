// UdpLink: carries IP packets one per UDP datagram between processes (on loopback, or
// anywhere UDP reaches), so nodes need no privilege. A static table maps destination
// prefixes to UDP endpoints (longest prefix wins). Reads and writes in batches
// (recvmmsg/sendmmsg) because one system call per packet dominates a userspace data path.
// Takes datagrams only from the routes' endpoints and the configured extra sources
// (tun/udp_peer_allowlist.hpp); others are dropped and counted (rx_foreign).
// Owned by the Node; loop thread only.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

#include <string>
#include <vector>

#include "base/ip_address.hpp"
#include "base/socket_address.hpp"
#include "base/uv_handle.hpp"
#include "tun/link.hpp"
#include "tun/udp_peer_allowlist.hpp"

namespace roam {

struct UdpRoute {
  IpPrefix prefix;
  sockaddr_storage endpoint{};
  socklen_t endpoint_len = 0;
};

struct UdpLinkConfig {
  sockaddr_storage bind{};
  socklen_t bind_len = 0;
  std::vector<UdpRoute> routes;
  // Sources accepted besides the routes' endpoints (which always are); any_peer: all.
  std::vector<UdpPeerRule> allow;
  bool allow_any_peer = false;
  size_t mtu = 1500;
};

class UdpLink final : public Link {
 public:
  UdpLink(uv_loop_t* loop, UdpLinkConfig config);
  ~UdpLink() override;

  Result<Ok, std::string> start(ReceiveBatchFn on_batch) override;
  void send(PacketView packet) override;
  void flush() override;
  void close() override;
  size_t mtu() const override { return config_.mtu; }
  std::string describe() const override;
  const LinkCounters& counters() const override { return counters_; }

  // The bound address (useful when binding port 0).
  sockaddr_storage local_address() const;
  const UdpPeerAllowlist& peers() const { return peers_; }

 private:
  static constexpr size_t batch_size = 64;
  static void on_readable(uv_poll_t* handle, int status, int events) noexcept;
  void read_batches();
  const UdpRoute* route_for(PacketView packet) const;

  uv_loop_t* loop_;
  UdpLinkConfig config_;
  UdpPeerAllowlist peers_;
  int fd_ = -1;
  UvHandle<uv_poll_t> poll_;
  ReceiveBatchFn on_batch_;
  LinkCounters counters_;

  // Receive side: one buffer per datagram of a batch, one byte larger than the MTU so an
  // oversize datagram shows up as truncated and is dropped.
  std::vector<std::vector<uint8_t>> rx_buffers_;
  std::vector<mmsghdr> rx_headers_;
  std::vector<iovec> rx_iovecs_;
  std::vector<sockaddr_storage> rx_sources_;
  std::vector<PacketView> rx_views_;

  // Send side: packets queued by send() until flush().
  std::vector<std::vector<uint8_t>> tx_buffers_;
  std::vector<mmsghdr> tx_headers_;
  std::vector<iovec> tx_iovecs_;
  size_t tx_queued_ = 0;
};

}  // namespace roam
