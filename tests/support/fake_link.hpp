// FakeLink: a Link for unit tests. Records every packet the node sends and lets a test
// inject packets as if the device had received them. Loop thread only.
#pragma once

#include <vector>

#include "tun/link.hpp"

namespace roam::testing {

class FakeLink final : public Link {
 public:
  explicit FakeLink(size_t mtu = 1500, LinkOffloads offloads = {}) : mtu_(mtu), offloads_(offloads) {}

  Result<Ok, std::string> start(ReceiveBatchFn on_batch) override {
    on_batch_ = std::move(on_batch);
    return Ok{};
  }
  void send(PacketView packet) override {
    sent.emplace_back(packet.begin(), packet.end());
    sent_mss.push_back(0);
    ++counters_.tx_packets;
  }
  // A TSO link: records the packet as is (a test plays the device) and the MSS asked for.
  void send_segmented(PacketView packet, uint16_t mss) override {
    send(packet);
    sent_mss.back() = mss;
    segmented_mss.push_back(mss);
  }
  LinkOffloads offloads() const override { return offloads_; }
  void close() override { on_batch_ = nullptr; }
  size_t mtu() const override { return mtu_; }
  std::string describe() const override { return "fake"; }
  const LinkCounters& counters() const override { return counters_; }

  void inject(std::span<const uint8_t> packet) {
    PacketView view(packet.data(), packet.size());
    if (on_batch_) on_batch_(std::span<const PacketView>(&view, 1));
  }
  // Several packets read in one wake-up (a busy link: Node's busy_batch_packets).
  void inject_batch(const std::vector<std::vector<uint8_t>>& packets) {
    std::vector<PacketView> views(packets.begin(), packets.end());
    if (on_batch_) on_batch_(views);
  }

  std::vector<std::vector<uint8_t>> sent;
  std::vector<uint16_t> sent_mss;       // beside `sent`: the MSS asked for, 0 for send()
  std::vector<uint16_t> segmented_mss;  // one per send_segmented call

 private:
  size_t mtu_;
  LinkOffloads offloads_;
  ReceiveBatchFn on_batch_;
  LinkCounters counters_;
};

}  // namespace roam::testing
