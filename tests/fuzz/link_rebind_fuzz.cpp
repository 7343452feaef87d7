// libFuzzer target for what reaches a UDP link with --udp-roam from anyone: link rebind
// datagrams (tun/link_rebind.hpp), through the decoder and the server's table (which must
// refuse whatever the fuzzer makes: it never knows the key), and the LINK_KEY message.
// None may crash; whatever decodes must encode back to the same bytes under the same MAC.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <variant>
#include <vector>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "stack/control/messages.hpp"
#include "tun/link_rebind.hpp"
#include "tun/udp_roam_table.hpp"

namespace {

void check(bool condition) {
  if (!condition) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> bytes(data, size);
  roam::LinkKey key{};
  key.fill(0x5a);
  if (auto rebind = roam::decode_link_rebind(bytes)) {
    auto again = roam::encode_link_rebind(rebind->inner, rebind->counter, key);
    check(again.size() == bytes.size());
    check(std::memcmp(again.data(), bytes.data(), bytes.size() - roam::link_rebind_mac_bytes) == 0);
    check(roam::decode_link_rebind(again).has_value());
  }
  static roam::UdpRoamTable table([] {
    auto prefix = roam::IpPrefix::parse("0.0.0.0/0");
    auto prefix6 = roam::IpPrefix::parse("::/0");
    return std::vector<roam::IpPrefix>{*prefix, *prefix6};
  }());
  sockaddr_storage source{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&source);
  v4->sin_family = AF_INET;
  v4->sin_port = htons(40000);
  v4->sin_addr.s_addr = htonl(0xC6120001);  // 198.18.0.1
  static uint64_t now = 0;
  now += 1000;  // no rate limit in the way: every input is verified
  auto verdict = table.on_rebind(bytes, source, now);
  check(verdict != roam::RebindVerdict::applied && verdict != roam::RebindVerdict::unchanged);
  if (auto message = roam::control::decode_message(bytes)) {
    if (std::holds_alternative<roam::control::LinkKeyGrant>(message.value()))
      check(roam::control::encode_message(message.value()) ==
            std::vector<uint8_t>(bytes.begin(), bytes.end()));
  }
  return 0;
}
