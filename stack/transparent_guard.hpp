// TransparentGuard: the input filter in front of roam-client's transparent netif (the TUN
// device the kernel routes chosen prefixes into; stack/transparent_listener.hpp). Only
// the kernel's own TCP over IPv4 may reach lwIP there: anything else is dropped and
// counted, and a SYN to a destination outside the overlay is counted before lwIP answers
// it with RST. Packets of other interfaces pass untouched. The decision is a pure
// function (classify_transparent_packet), unit-tested.
#pragma once

#include <cstdint>
#include <functional>

#include "base/ip_address.hpp"
#include "stack/node.hpp"

namespace roam {

enum class TransparentVerdict {
  pass,            // the kernel's TCP to a destination we carry
  refuse,          // a SYN to a destination we do not carry: lwIP answers RST (passes)
  not_tcp,         // IPv6, UDP, ICMP...: dropped
  foreign_source,  // not from the kernel's address on the device: dropped
};

using TransparentAcceptsFn = std::function<bool(const IpAddress& destination, uint16_t port)>;

// `tcp` is the packet's parsed TCP segment, or nullptr when it is not TCP.
TransparentVerdict classify_transparent_packet(const wire::PacketInfo& info, const wire::TcpSegmentView* tcp,
                                               const IpAddress& kernel_address, const TransparentAcceptsFn& accepts);

struct TransparentCounters {
  uint64_t refused = 0;  // SYNs to destinations outside the overlay (answered RST)
  uint64_t not_tcp = 0;
  uint64_t foreign_source = 0;
};

class TransparentGuard final : public InputFilter {
 public:
  TransparentGuard(const netif* interface, IpAddress kernel_address, TransparentAcceptsFn accepts)
      : interface_(interface), kernel_address_(kernel_address), accepts_(std::move(accepts)) {}
  FilterVerdict on_input(const InboundPacket& packet) override;
  const TransparentCounters& counters() const { return counters_; }

 private:
  const netif* interface_;
  IpAddress kernel_address_;
  TransparentAcceptsFn accepts_;
  TransparentCounters counters_;
};

}  // namespace roam
