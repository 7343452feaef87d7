// libFuzzer target for stack/wire/virtio_net_header: what TunLink does with every read
// from a TUN device with IFF_VNET_HDR (parse the header, complete a partial checksum,
// validate), and plan_offload on arbitrary "lwIP output".
// Run: fuzz_virtio_net_header -max_len=4096 <scratch-dir> (built with Clang only).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "stack/wire/ip_packet.hpp"
#include "stack/wire/virtio_net_header.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::vector<uint8_t> buffer(65536 + 16);
  if (size > buffer.size()) return 0;
  std::copy(data, data + size, buffer.begin());
  std::span<uint8_t> bytes(buffer.data(), size);
  const auto header = roam::wire::parse_virtio_net_header(bytes);
  if (header) {
    auto packet = bytes.subspan(roam::wire::virtio_net_header_size);
    if (roam::wire::complete_checksum(*header, packet)) (void)roam::wire::check_ip_packet(packet);
  }
  const uint16_t mss = size >= 2 ? static_cast<uint16_t>((data[0] << 8) | data[1]) : 0;
  const auto plan = roam::wire::plan_offload(std::span<const uint8_t>(data, size), mss);
  if (plan && plan->partial_checksum && plan->checksum_at + 2 > size) __builtin_trap();
  return 0;
}
