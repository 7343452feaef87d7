// FakeLink: a Link for unit tests. Records every packet the node sends and lets a test
// inject packets as if the device had received them. Loop thread only.
#pragma once

#include <vector>

#include "tun/link.hpp"

namespace roam::testing {

class FakeLink final : public Link {
 public:
  explicit FakeLink(size_t mtu = 1500) : mtu_(mtu) {}

  Result<Ok, std::string> start(ReceiveBatchFn on_batch) override {
    on_batch_ = std::move(on_batch);
    return Ok{};
  }
  void send(PacketView packet) override {
    sent.emplace_back(packet.begin(), packet.end());
    ++counters_.tx_packets;
  }
  void close() override { on_batch_ = nullptr; }
  size_t mtu() const override { return mtu_; }
  std::string describe() const override { return "fake"; }
  const LinkCounters& counters() const override { return counters_; }

  void inject(std::span<const uint8_t> packet) {
    PacketView view(packet.data(), packet.size());
    if (on_batch_) on_batch_(std::span<const PacketView>(&view, 1));
  }

  std::vector<std::vector<uint8_t>> sent;

 private:
  size_t mtu_;
  ReceiveBatchFn on_batch_;
  LinkCounters counters_;
};

}  // namespace roam::testing
