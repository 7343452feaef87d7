// TunLink: a Linux TUN device (IFF_TUN | IFF_NO_PI: each read or write is one bare IP
// packet). Creates the device when the process has CAP_NET_ADMIN, or attaches to a
// persistent device that root created once for this user
// (`ip tuntap add mode tun user NAME name DEV`), which then needs no privilege.
// Kernel-side addresses and routes for the device are the operator's (or the lab tool's)
// job. Reads up to a batch of packets per wake-up. Owned by the Node; loop thread only.
#pragma once

#include <uv.h>

#include <string>
#include <vector>

#include "tun/link.hpp"
#include "tun/uv_handle.hpp"

namespace roam {

struct TunLinkConfig {
  std::string name;
  size_t mtu = 1500;
};

class TunLink final : public Link {
 public:
  TunLink(uv_loop_t* loop, TunLinkConfig config);
  ~TunLink() override;

  Result<Ok, std::string> start(ReceiveBatchFn on_batch) override;
  void send(PacketView packet) override;
  void close() override;
  size_t mtu() const override { return config_.mtu; }
  std::string describe() const override { return "tun:" + config_.name; }
  const LinkCounters& counters() const override { return counters_; }

 private:
  static constexpr size_t batch_size = 64;
  static void on_readable(uv_poll_t* handle, int status, int events) noexcept;
  void read_batch();
  void bring_up_if_permitted();

  uv_loop_t* loop_;
  TunLinkConfig config_;
  int fd_ = -1;
  UvHandle<uv_poll_t> poll_;
  ReceiveBatchFn on_batch_;
  LinkCounters counters_;
  std::vector<std::vector<uint8_t>> rx_buffers_;
  std::vector<PacketView> rx_views_;
};

}  // namespace roam
