#include "stack/flow_key.hpp"

#include <cstring>

#include "lwip/priv/tcp_priv.h"
#include "stack/lwip.hpp"
#include "stack/lwip_address.hpp"

namespace roam {

namespace {

constexpr uint8_t protocol_tcp = 6;

struct Endpoints {
  IpAddress source;
  IpAddress destination;
  uint16_t source_port = 0;
  uint16_t destination_port = 0;
};

// Reads addresses and ports of an IPv4 or IPv6 TCP packet; nullopt when not TCP or short.
// IPv6 extension headers are not followed: lwIP sends none, and check_ip_packet accepts
// only TCP, UDP and ICMPv6 as the first next header.
std::optional<Endpoints> tcp_endpoints(std::span<const uint8_t> packet) {
  if (packet.empty()) return std::nullopt;
  Endpoints e;
  size_t transport = 0;
  unsigned version = packet[0] >> 4;
  if (version == 4) {
    if (packet.size() < 20) return std::nullopt;
    transport = static_cast<size_t>(packet[0] & 0x0F) * 4;
    if (packet[9] != protocol_tcp || transport < 20) return std::nullopt;
    e.source.version = e.destination.version = 4;
    std::memcpy(e.source.bytes.data(), packet.data() + 12, 4);
    std::memcpy(e.destination.bytes.data(), packet.data() + 16, 4);
  } else if (version == 6) {
    if (packet.size() < 40 || packet[6] != protocol_tcp) return std::nullopt;
    transport = 40;
    e.source.version = e.destination.version = 6;
    std::memcpy(e.source.bytes.data(), packet.data() + 8, 16);
    std::memcpy(e.destination.bytes.data(), packet.data() + 24, 16);
  } else {
    return std::nullopt;
  }
  if (packet.size() < transport + 4) return std::nullopt;
  e.source_port = static_cast<uint16_t>(packet[transport] << 8 | packet[transport + 1]);
  e.destination_port = static_cast<uint16_t>(packet[transport + 2] << 8 | packet[transport + 3]);
  return e;
}

}  // namespace

std::string endpoint_string(const IpAddress& address, uint16_t port) {
  std::string host = address.to_string();
  return (address.version == 6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string FlowKey::to_string() const {
  return endpoint_string(local, local_port) + " <-> " + endpoint_string(remote, remote_port);
}

size_t FlowKeyHash::operator()(const FlowKey& key) const noexcept {
  // FNV-1a over the meaningful bytes: cheap, and flows are not attacker-chosen here
  // (only flows this host is moving are ever inserted).
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const uint8_t* data, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ data[i]) * 1099511628211ull;
  };
  mix(key.local.bytes.data(), key.local.size());
  mix(key.remote.bytes.data(), key.remote.size());
  uint8_t ports[4] = {static_cast<uint8_t>(key.local_port >> 8), static_cast<uint8_t>(key.local_port),
                      static_cast<uint8_t>(key.remote_port >> 8), static_cast<uint8_t>(key.remote_port)};
  mix(ports, 4);
  return static_cast<size_t>(h);
}

std::optional<FlowKey> inbound_flow(std::span<const uint8_t> packet) {
  auto e = tcp_endpoints(packet);
  if (!e) return std::nullopt;
  return FlowKey{e->destination, e->source, e->destination_port, e->source_port};
}

std::optional<FlowKey> outbound_flow(std::span<const uint8_t> packet) {
  auto e = tcp_endpoints(packet);
  if (!e) return std::nullopt;
  return FlowKey{e->source, e->destination, e->source_port, e->destination_port};
}

FlowKey flow_of(const tcp_pcb* pcb) {
  return {from_lwip(pcb->local_ip), from_lwip(pcb->remote_ip), pcb->local_port, pcb->remote_port};
}

tcp_pcb* find_active_pcb(const FlowKey& key) {
  for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next) {
    if (pcb->local_port == key.local_port && pcb->remote_port == key.remote_port &&
        from_lwip(pcb->remote_ip) == key.remote && from_lwip(pcb->local_ip) == key.local)
      return pcb;
  }
  return nullptr;
}

bool lwip_has_flow(const FlowKey& key) {
  if (find_active_pcb(key) != nullptr) return true;
  for (tcp_pcb* pcb = tcp_tw_pcbs; pcb != nullptr; pcb = pcb->next)
    if (flow_of(pcb) == key) return true;
  return false;
}

}  // namespace roam
