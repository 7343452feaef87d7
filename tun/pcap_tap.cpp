#include "tun/pcap_tap.hpp"

namespace roam {

PcapTap::PcapTap(std::unique_ptr<Link> inner, std::unique_ptr<PcapWriter> writer)
    : inner_(std::move(inner)), writer_(std::move(writer)) {}

PcapTap::~PcapTap() {
  close();
}

Result<Ok, std::string> PcapTap::start(ReceiveBatchFn on_batch) {
  return inner_->start([this, on_batch = std::move(on_batch)](std::span<const PacketView> batch) {
    for (const auto& packet : batch) writer_->write(packet);
    on_batch(batch);
  });
}

void PcapTap::send(PacketView packet) {
  writer_->write(packet);
  inner_->send(packet);
}

// Records the packet as lwIP built it (before segmentation; with checksum offload the
// TCP checksum is still zero there), as tcpdump on a host with offloads shows them.
void PcapTap::send_segmented(PacketView packet, uint16_t mss) {
  writer_->write(packet);
  inner_->send_segmented(packet, mss);
}

void PcapTap::flush() {
  inner_->flush();
  writer_->flush();
}

void PcapTap::close() {
  inner_->close();
  if (writer_) writer_->flush();
}

}  // namespace roam
