// TunLink: a Linux TUN device (IFF_TUN | IFF_NO_PI: each read or write is one bare IP
// packet). Creates the device when the process has CAP_NET_ADMIN, or attaches to a
// persistent device that root created once for this user
// (`ip tuntap add mode tun user NAME name DEV`), which then needs no privilege.
// Kernel-side addresses and routes for the device are the operator's (or the lab tool's)
// job. Reads up to a batch of packets per wake-up: with io_uring, one system call for the
// batch (tun/uring_batch_reader.hpp), else one read() per packet. Owned by the Node; loop
// thread only.
//
// Offloads (on unless TunLinkConfig::offload is false, and only when the kernel accepts
// them, as wireguard-go does): the device is opened with IFF_VNET_HDR and TUNSETOFFLOAD
// TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, so every packet carries a virtio_net_hdr
// (stack/wire/virtio_net_header.hpp). Out: lwIP hands over TCP segments of up to ~64 KiB
// with a zero checksum; one writev() per segment tells the kernel to checksum it and cut
// it into MSS-sized packets (GSO). In: the kernel may hand over GRO'd or GSO super-packets
// (up to 64 KiB) and packets whose checksum is only partial (NEEDS_CSUM): the checksum is
// completed here so the Node validates them like any other packet.
#pragma once

#include <uv.h>

#include <memory>
#include <string>
#include <vector>

#include "tun/link.hpp"
#include "tun/tun_syn_check.hpp"
#include "tun/uring_batch_reader.hpp"
#include "base/uv_handle.hpp"

namespace roam {

struct TunLinkConfig {
  std::string name;
  size_t mtu = 1500;
  bool offload = true;  // try IFF_VNET_HDR + TSO; `--link tun:NAME,no-offload` turns it off
  // Read batches with io_uring (tun/uring_batch_reader.hpp) when the kernel allows it;
  // `--link tun:NAME,no-uring`: one read() per packet, as before.
  bool uring = true;
};

class TunLink final : public Link {
 public:
  TunLink(uv_loop_t* loop, TunLinkConfig config);
  ~TunLink() override;

  Result<Ok, std::string> start(ReceiveBatchFn on_batch) override;
  void send(PacketView packet) override;
  void send_segmented(PacketView packet, uint16_t mss) override;
  void close() override;
  size_t mtu() const override { return config_.mtu; }
  LinkOffloads offloads() const override;
  std::string describe() const override {
    return "tun:" + config_.name + (tso_ ? " (tso)" : "") + (uring_ ? " (io_uring reads)" : "");
  }
  const LinkCounters& counters() const override { return counters_; }
  // Attached on the first call; detached by close(), kept (counters readable) until destroyed.
  TunSynCheck* kernel_syn_check(std::string& why) override;

 private:
  static constexpr size_t batch_size = 64;
  // io_uring batches: reads submitted per wake-up, between these, twice what the last
  // batch found (a read that finds nothing costs the kernel little, but 64 of them per
  // packet at a low rate would cost more than the system calls they save).
  static constexpr size_t min_uring_reads = 4;
  // The largest IP packet the kernel delivers with TSO on, and what we may send.
  static constexpr size_t max_offload_packet = 65535;
  static void on_readable(uv_poll_t* handle, int status, int events) noexcept;
  void read_batch();
  void read_batch_uring();
  void stop_uring(const std::string& why);
  // Checks one packet read into rx_buffers_[slot] (n bytes) and queues it in rx_views_;
  // false (counted as dropped): not queued, the slot is free for the next read.
  bool take_packet(size_t slot, size_t n);
  void bring_up_if_permitted();
  void enable_offloads();
  void write_packet(PacketView packet, uint16_t mss);

  uv_loop_t* loop_;
  TunLinkConfig config_;
  int fd_ = -1;
  bool vnet_header_ = false;  // every read/write starts with a virtio_net_hdr
  bool tso_ = false;          // and the kernel checksums and segments TCP for us
  UvHandle<uv_poll_t> poll_;
  ReceiveBatchFn on_batch_;
  LinkCounters counters_;
  std::vector<std::vector<uint8_t>> rx_buffers_;
  std::vector<PacketView> rx_views_;
  std::unique_ptr<UringBatchReader> uring_;
  std::vector<int32_t> uring_results_;
  size_t uring_reads_ = min_uring_reads;
  std::unique_ptr<TunSynCheck> syn_check_;
  std::string syn_check_refused_;  // why the kernel refused it (asked once)
};

}  // namespace roam
