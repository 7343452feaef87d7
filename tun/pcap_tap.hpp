// PcapTap: wraps any Link and writes every packet it sends and receives to a pcap file
// (LINKTYPE_RAW), readable by tcpdump and tshark. Decorator in the spirit of smoltcp's
// phy/tracer.rs: the wrapped link does not know it is watched. It offers no kernel
// sequence filter (Link::set_sequence_filter's default): a capture shows every packet
// that reached the link, forgeries included. Loop thread only.
#pragma once

#include <memory>

#include "tun/link.hpp"
#include "tun/pcap_writer.hpp"

namespace roam {

class PcapTap final : public Link {
 public:
  PcapTap(std::unique_ptr<Link> inner, std::unique_ptr<PcapWriter> writer);
  ~PcapTap() override;

  Result<Ok, std::string> start(ReceiveBatchFn on_batch) override;
  void send(PacketView packet) override;
  void send_segmented(PacketView packet, uint16_t mss) override;
  void flush() override;
  void close() override;
  size_t mtu() const override { return inner_->mtu(); }
  LinkOffloads offloads() const override { return inner_->offloads(); }
  std::string describe() const override { return inner_->describe() + " (pcap)"; }
  const LinkCounters& counters() const override { return inner_->counters(); }

 private:
  std::unique_ptr<Link> inner_;
  std::unique_ptr<PcapWriter> writer_;
};

}  // namespace roam
