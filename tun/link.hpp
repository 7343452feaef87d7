// Link: a device that carries whole IP packets to and from this node's lwIP stack
// (TUN device, IP-in-UDP socket, or a wrapper such as the pcap tap). Owned by the Node;
// every call happens on the Node's libuv loop thread. No TCP knowledge lives here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "base/result.hpp"
#include "tun/sequence_filter.hpp"

namespace roam {

// One received packet. The bytes belong to the link and stay valid only during the
// receive callback.
using PacketView = std::span<const uint8_t>;

struct LinkCounters {
  uint64_t rx_packets = 0;
  uint64_t rx_bytes = 0;
  uint64_t rx_dropped = 0;  // truncated datagrams, unknown senders, read errors
  uint64_t rx_foreign = 0;  // of those, datagrams from a sender the link does not accept
  // Datagrams the kernel dropped at the link's socket (its sequence filter, a full
  // receive buffer): the socket's own drop count as last sampled. Not in rx_dropped.
  uint64_t rx_dropped_kernel = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_bytes = 0;
  uint64_t tx_dropped = 0;  // no route, oversize, or the device/socket was full
};

// What a link does to outgoing packets itself, so lwIP may leave that work to it. The
// default (all off) is a link that sends packets exactly as given.
struct LinkOffloads {
  // TCP payload bytes one packet handed to send_segmented() may carry (the link or its
  // device cuts it into segments of the connection's MSS): 0 when send_segmented is not
  // supported and every packet must fit mtu().
  size_t max_tcp_payload = 0;
  // The link completes TCP checksums: lwIP leaves the field zero on this link's packets
  // (only the pseudo header is summed, by the link).
  bool tcp_checksum = false;
};

class TunSynCheck;

class Link {
 public:
  // Receives every packet read in one wake-up, so the consumer can work per batch.
  using ReceiveBatchFn = std::function<void(std::span<const PacketView>)>;

  virtual ~Link() = default;

  // Starts reading; packets arrive on `on_batch` until close().
  virtual Result<Ok, std::string> start(ReceiveBatchFn on_batch) = 0;
  // Queues one IP packet for sending. May send at once or wait for flush(); never blocks.
  // A packet that cannot be sent is dropped and counted (IP is best effort; TCP recovers).
  virtual void send(PacketView packet) = 0;
  // Queues one TCP packet that may be larger than mtu(), up to offloads().max_tcp_payload
  // bytes of payload, to leave as segments of at most `mss` payload bytes (TCP
  // segmentation offload). Only called on a link whose offloads() allow it.
  virtual void send_segmented(PacketView packet, uint16_t /*mss*/) { send(packet); }
  // Sends whatever send() queued. The Node calls it once per loop iteration.
  virtual void flush() {}
  // Stops reading and releases the device or socket. Idempotent.
  virtual void close() = 0;

  // Installs a kernel filter that drops blind forgeries of `flows` before they are read
  // (tun/sequence_filter.hpp), replacing the previous one; no flows: no filter. False when
  // this link has none to offer (the default) or the kernel refused it (then no filter
  // is left: an old one's ranges would fall behind).
  virtual bool set_sequence_filter(std::span<const SequenceFilterFlow> /*flows*/) { return false; }
  // Reads the kernel's drop count into counters().rx_dropped_kernel (nothing by default).
  virtual void sample_kernel_counters() {}
  // The first-SYN check the kernel runs on this link's packets (tun/tun_syn_check.hpp),
  // set up on the first call and kept until close(); nullptr when this link has none to
  // offer (the default: `why` left empty) or the kernel refused it (`why` says why).
  virtual TunSynCheck* kernel_syn_check(std::string& /*why*/) { return nullptr; }

  virtual size_t mtu() const = 0;
  virtual LinkOffloads offloads() const { return {}; }
  virtual std::string describe() const = 0;
  virtual const LinkCounters& counters() const = 0;
};

}  // namespace roam
