// FlowKey: one TCP connection's 4-tuple as seen from this host (local = our side), used
// to find a connection's packets on input and output while it moves. Pure; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "base/ip_address.hpp"

struct tcp_pcb;

namespace roam {

// "198.18.12.2:7000" or "[2001:db8:12::2]:7000".
std::string endpoint_string(const IpAddress& address, uint16_t port);

struct FlowKey {
  IpAddress local;
  IpAddress remote;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;

  bool operator==(const FlowKey& other) const = default;
  std::string to_string() const;
};

struct FlowKeyHash {
  size_t operator()(const FlowKey& key) const noexcept;
};

// The flow of a TCP packet arriving at this host (destination = local). The packet must
// have passed wire::check_ip_packet; nullopt for anything that is not TCP.
std::optional<FlowKey> inbound_flow(std::span<const uint8_t> packet);
// The flow of a TCP packet this host sends (source = local). nullopt when not TCP or too
// short to hold the headers.
std::optional<FlowKey> outbound_flow(std::span<const uint8_t> packet);

// The pcb's 4-tuple as seen from this host.
FlowKey flow_of(const tcp_pcb* pcb);

// The active pcb lwIP has for `key`, or nullptr.
tcp_pcb* find_active_pcb(const FlowKey& key);

// lwIP holds a connection for `key`, active or in TIME_WAIT: a segment of that flow is
// lwIP's business, not a defense's (a walk of both lists: for segments that are not SYNs).
bool lwip_has_flow(const FlowKey& key);

}  // namespace roam
