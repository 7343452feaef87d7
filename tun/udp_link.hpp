// UdpLink: carries IP packets one per UDP datagram between processes (on loopback, or
// anywhere UDP reaches), so nodes need no privilege. A static table maps destination
// prefixes to UDP endpoints (longest prefix wins). Reads and writes in batches
// (recvmmsg/sendmmsg) because one system call per packet dominates a userspace data path.
// Takes datagrams only from the routes' endpoints and the configured extra sources
// (tun/udp_peer_allowlist.hpp); others are dropped and counted (rx_foreign). With a
// UdpRoamTable (--udp-roam, tun/udp_roam_table.hpp) it also takes link rebind datagrams
// (checked before the allowlist, never handed to the stack) and follows the clients that
// proved their new endpoint with one.
// Owned by the Node; loop thread only.
#pragma once

#include <netinet/in.h>

#include <optional>
#include <sys/socket.h>
#include <uv.h>

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/ip_address.hpp"
#include "base/rate_limited_log.hpp"
#include "base/socket_address.hpp"
#include "base/uv_handle.hpp"
#include "tun/link.hpp"
#include "tun/udp_peer_allowlist.hpp"
#include "tun/udp_roam_table.hpp"

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
  // --udp-roam: inner addresses whose endpoint a link rebind may move (nullptr: none).
  std::shared_ptr<UdpRoamTable> roam;
};

class UdpLink final : public Link {
 public:
  UdpLink(uv_loop_t* loop, UdpLinkConfig config);
  ~UdpLink() override;

  Result<Ok, std::string> start(ReceiveBatchFn on_batch) override;
  void send(PacketView packet) override;
  void flush() override;
  void close() override;
  bool set_sequence_filter(std::span<const SequenceFilterFlow> flows) override;
  void sample_kernel_counters() override;
  size_t mtu() const override { return config_.mtu; }
  std::string describe() const override;
  const LinkCounters& counters() const override { return counters_; }

  // The bound address (useful when binding port 0).
  sockaddr_storage local_address() const;
  const UdpPeerAllowlist& peers() const { return peers_; }
  UdpRoamTable* roam() { return config_.roam.get(); }
  const UdpRoamTable* roam() const { return config_.roam.get(); }

  // The endpoint packets for `inner` go to now (a roamed one, else the static route), or
  // nullopt when no route covers it.
  std::optional<sockaddr_storage> endpoint_for(const IpAddress& inner) const;
  // Sends one datagram that is not an IP packet (a link rebind) on the link's socket at
  // once. False if it could not be sent.
  bool send_datagram(std::span<const uint8_t> datagram, const sockaddr_storage& to);
  // Rebind datagrams that reached a link without --udp-roam (dropped, counted).
  uint64_t rebinds_ignored() const { return rebinds_ignored_; }

 private:
  static constexpr size_t batch_size = 64;
  static void on_readable(uv_poll_t* handle, int status, int events) noexcept;
  void read_batches();
  const UdpRoute* route_for(const IpAddress& destination) const;
  void on_rebind(PacketView datagram, const sockaddr_storage& source);
  void detach_sequence_filter();

  uv_loop_t* loop_;
  UdpLinkConfig config_;
  UdpPeerAllowlist peers_;
  int fd_ = -1;
  UvHandle<uv_poll_t> poll_;
  ReceiveBatchFn on_batch_;
  LinkCounters counters_;
  uint64_t rebinds_ignored_ = 0;
  bool sequence_filter_attached_ = false;
  RateLimitedLog rebind_refusal_log_{std::chrono::seconds(1)};
  RateLimitedLog filter_refusal_log_{std::chrono::seconds(1)};

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
  std::vector<sockaddr_storage> tx_names_;
  size_t tx_queued_ = 0;
};

}  // namespace roam
