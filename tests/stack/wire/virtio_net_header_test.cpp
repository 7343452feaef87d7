// Tests for stack/wire/virtio_net_header: decode known bytes, re-encode them, reject every
// truncation and what we never enable; finish a partial checksum; plan TSO headers.
#include "stack/wire/virtio_net_header.hpp"

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "stack/wire/checksum.hpp"
#include "stack/wire/ip_packet.hpp"

namespace {

using namespace roam::wire;

// A header as Linux writes it for a GRO'd TCPv4 packet: NEEDS_CSUM, GSO TCPv4, hdr_len 52,
// gso_size 1448, csum_start 20, csum_offset 16 (little-endian fields).
constexpr std::array<uint8_t, 10> gso_header_bytes{0x01, 0x01, 0x34, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00};

// An IPv4 TCP packet 10.9.0.1:49684 -> 10.9.0.2:8080 with `payload` bytes of data and a
// complete checksum.
std::vector<uint8_t> tcp4_packet(size_t payload) {
  std::vector<uint8_t> p(40 + payload);
  const size_t total = p.size();
  p[0] = 0x45;
  p[2] = static_cast<uint8_t>(total >> 8);
  p[3] = static_cast<uint8_t>(total);
  p[6] = 0x40;  // DF
  p[8] = 64;
  p[9] = ip_protocol_tcp;
  const std::array<uint8_t, 8> addresses{10, 9, 0, 1, 10, 9, 0, 2};
  std::copy(addresses.begin(), addresses.end(), p.begin() + 12);
  const uint16_t ip_sum = internet_checksum(std::span(p).first(20));
  p[10] = static_cast<uint8_t>(ip_sum >> 8);
  p[11] = static_cast<uint8_t>(ip_sum);
  const std::array<uint8_t, 20> tcp{0xc2, 0x14, 0x1f, 0x90, 0x35, 0xbd, 0x3c, 0x32, 0, 0, 0, 1,
                                    0x50, 0x18, 0xfa, 0xf0, 0, 0, 0, 0};
  std::copy(tcp.begin(), tcp.end(), p.begin() + 20);
  for (size_t i = 0; i < payload; ++i) p[40 + i] = static_cast<uint8_t>(i * 7 + 3);
  uint32_t acc = pseudo_header_sum_v4(std::span(p).subspan<12, 4>(), std::span(p).subspan<16, 4>(), ip_protocol_tcp,
                                      static_cast<uint16_t>(total - 20));
  const uint16_t sum = checksum_fold(checksum_add(acc, std::span(p).subspan(20)));
  p[36] = static_cast<uint8_t>(sum >> 8);
  p[37] = static_cast<uint8_t>(sum);
  return p;
}

std::vector<uint8_t> tcp6_packet(size_t payload) {
  std::vector<uint8_t> p(60 + payload);
  p[0] = 0x60;
  p[4] = static_cast<uint8_t>((20 + payload) >> 8);
  p[5] = static_cast<uint8_t>(20 + payload);
  p[6] = ip_protocol_tcp;
  p[7] = 64;
  p[8] = 0x20;
  p[9] = 0x01;
  p[23] = 1;
  p[24] = 0x20;
  p[25] = 0x01;
  p[39] = 2;
  p[52] = 0x50;
  for (size_t i = 0; i < payload; ++i) p[60 + i] = static_cast<uint8_t>(i);
  return p;
}

}  // namespace

TEST_CASE("virtio_net_hdr decodes known bytes and re-encodes them to the same bytes") {
  auto parsed = parse_virtio_net_header(gso_header_bytes);
  REQUIRE(parsed);
  CHECK(parsed->flags == virtio_net_flag_needs_csum);
  CHECK(parsed->gso_type == virtio_net_gso_tcpv4);
  CHECK(parsed->hdr_len == 52);
  CHECK(parsed->gso_size == 1448);
  CHECK(parsed->csum_start == 20);
  CHECK(parsed->csum_offset == 16);
  std::array<uint8_t, virtio_net_header_size> out{};
  emit_virtio_net_header(*parsed, out);
  CHECK(out == gso_header_bytes);
}

TEST_CASE("virtio_net_hdr rejects every truncation") {
  for (size_t n = 0; n < virtio_net_header_size; ++n) {
    auto parsed = parse_virtio_net_header(std::span(gso_header_bytes).first(n));
    REQUIRE_FALSE(parsed);
    CHECK(parsed.error() == VirtioNetError::too_short);
  }
}

TEST_CASE("virtio_net_hdr rejects flags and GSO types a TSO-only device never sends") {
  auto bytes = gso_header_bytes;
  bytes[0] = 0x04;  // VIRTIO_NET_HDR_F_RSC_INFO
  CHECK(parse_virtio_net_header(bytes).error() == VirtioNetError::bad_flags);
  bytes = gso_header_bytes;
  bytes[1] = virtio_net_gso_udp_l4;
  CHECK(parse_virtio_net_header(bytes).error() == VirtioNetError::bad_flags);
  bytes[1] = virtio_net_gso_udp;
  CHECK(parse_virtio_net_header(bytes).error() == VirtioNetError::bad_flags);
  bytes[1] = virtio_net_gso_tcpv6 | virtio_net_gso_ecn;
  CHECK(parse_virtio_net_header(bytes));
}

TEST_CASE("complete_checksum turns a partial (pseudo-header) TCP checksum into the full one") {
  auto packet = tcp4_packet(3000);
  const auto full = packet;
  // What the kernel hands over for CHECKSUM_PARTIAL: the folded pseudo-header sum.
  auto plan = plan_offload(packet, 1460);
  REQUIRE(plan);
  REQUIRE(plan->partial_checksum);
  packet[36] = static_cast<uint8_t>(*plan->partial_checksum >> 8);
  packet[37] = static_cast<uint8_t>(*plan->partial_checksum);
  CHECK_FALSE(check_ip_packet(packet));
  REQUIRE(complete_checksum(plan->header, packet));
  CHECK(packet == full);
  CHECK(check_ip_packet(packet));
}

TEST_CASE("complete_checksum leaves packets without NEEDS_CSUM alone and rejects offsets outside the packet") {
  auto packet = tcp4_packet(10);
  const auto before = packet;
  CHECK(complete_checksum(VirtioNetHeader{}, packet));
  CHECK(packet == before);
  VirtioNetHeader header{virtio_net_flag_needs_csum, 0, 0, 0, 20, 16};
  for (size_t n = 0; n < 38; ++n) {
    auto result = complete_checksum(header, std::span(packet).first(n));
    REQUIRE_FALSE(result);
    CHECK(result.error() == VirtioNetError::bad_checksum_range);
  }
  header.csum_start = 4;  // inside the IP header
  CHECK_FALSE(complete_checksum(header, packet));
  header.csum_start = 20;
  header.csum_offset = 0xffff;
  CHECK_FALSE(complete_checksum(header, packet));
  header.csum_offset = 15;
  CHECK_FALSE(complete_checksum(header, packet));
  CHECK(packet == before);
}

TEST_CASE("plan_offload asks the kernel to segment a TCPv4 packet longer than the MSS") {
  auto packet = tcp4_packet(64240);
  auto plan = plan_offload(packet, 1460);
  REQUIRE(plan);
  CHECK(plan->header == VirtioNetHeader{virtio_net_flag_needs_csum, virtio_net_gso_tcpv4, 40, 1460, 20, 16});
  CHECK(plan->checksum_at == 36);
  REQUIRE(plan->partial_checksum);
  const uint32_t pseudo = pseudo_header_sum_v4(std::span(packet).subspan<12, 4>(),
                                               std::span(packet).subspan<16, 4>(), ip_protocol_tcp, 64260);
  CHECK(*plan->partial_checksum == static_cast<uint16_t>(~checksum_fold(pseudo)));
}

TEST_CASE("plan_offload leaves a packet within the MSS unsegmented but still checksum-offloaded") {
  auto plan = plan_offload(tcp4_packet(1460), 1460);
  REQUIRE(plan);
  CHECK(plan->header == VirtioNetHeader{virtio_net_flag_needs_csum, virtio_net_gso_none, 40, 0, 20, 16});
  auto ack = plan_offload(tcp4_packet(0), 0);  // pure ACK: no MSS needed
  REQUIRE(ack);
  CHECK(ack->header.gso_type == virtio_net_gso_none);
  auto big = plan_offload(tcp4_packet(2000), 0);
  REQUIRE_FALSE(big);
  CHECK(big.error() == VirtioNetError::bad_mss);
}

TEST_CASE("plan_offload handles TCPv6 and leaves other protocols with an empty header") {
  auto packet = tcp6_packet(9000);
  auto plan = plan_offload(packet, 1440);
  REQUIRE(plan);
  CHECK(plan->header == VirtioNetHeader{virtio_net_flag_needs_csum, virtio_net_gso_tcpv6, 60, 1440, 40, 16});
  CHECK(plan->checksum_at == 56);
  auto udp = tcp4_packet(8);
  udp[9] = ip_protocol_udp;
  auto udp_plan = plan_offload(udp, 1460);
  REQUIRE(udp_plan);
  CHECK(udp_plan->header == VirtioNetHeader{});
  CHECK_FALSE(udp_plan->partial_checksum);
}

TEST_CASE("plan_offload rejects packets whose headers do not add up") {
  auto packet = tcp4_packet(100);
  for (size_t n = 0; n < packet.size(); ++n) CHECK_FALSE(plan_offload(std::span(packet).first(n), 1460));
  auto bad_offset = packet;
  bad_offset[32] = 0x40;  // TCP data offset 4 words
  CHECK(plan_offload(bad_offset, 1460).error() == VirtioNetError::bad_tcp_header);
  auto bad_version = packet;
  bad_version[0] = 0x55;
  CHECK(plan_offload(bad_version, 1460).error() == VirtioNetError::not_ip);
}
