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

void PcapTap::flush() {
  inner_->flush();
  writer_->flush();
}

void PcapTap::close() {
  inner_->close();
  if (writer_) writer_->flush();
}

}  // namespace roam
