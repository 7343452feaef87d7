// The per-segment MAC option on the wire: appended to IPv4 and IPv6 TCP packets with
// lengths and checksums that a receiver accepts, found again, and refused when malformed.
#include "stack/wire/segment_mac_option.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <vector>

#include "stack/wire/checksum.hpp"
#include "base/ip_address.hpp"

namespace {

using namespace roam::wire;
using roam::IpAddress;

std::vector<uint8_t> ipv4_segment(size_t payload_size, std::vector<uint8_t> options = {}) {
  Ipv4TcpFields f;
  f.src = {198, 18, 11, 2};
  f.dst = {198, 18, 12, 2};
  f.src_port = 40000;
  f.dst_port = 7000;
  f.seq = 1000;
  f.ack = 2000;
  f.flags = TcpSegmentView::ACK | TcpSegmentView::PSH;
  f.window = 512;
  f.options = options;
  std::vector<uint8_t> payload(payload_size);
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(i * 7);
  std::vector<uint8_t> packet(ipv4_tcp_packet_size(options.size(), payload_size));
  REQUIRE(build_ipv4_tcp(packet, f, payload) == packet.size());
  return packet;
}

const std::array<uint8_t, segment_mac_bytes> sample_mac = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};

TEST_CASE("the MAC option is appended with valid lengths and checksums, and found again (IPv4)") {
  for (size_t payload : {size_t{0}, size_t{1}, size_t{1000}}) {
    auto packet = ipv4_segment(payload, {2, 4, 0x05, 0xb4});  // an MSS option before it
    auto info = check_ip_packet(packet);
    REQUIRE(info);
    auto tcp = parse_tcp_segment(packet, info.value());
    REQUIRE(tcp);
    std::vector<uint8_t> out(packet.size() + 64);
    size_t length = append_segment_mac(packet, info.value(), *tcp, sample_mac, out);
    REQUIRE(length == packet.size() + segment_mac_option_bytes);
    out.resize(length);
    auto again = check_ip_packet(out);  // IP length, header checksum and TCP checksum
    REQUIRE(again);
    auto view = parse_tcp_segment(out, again.value());
    REQUIRE(view);
    CHECK(view->header_length == tcp->header_length + segment_mac_option_bytes);
    CHECK(std::equal(view->payload.begin(), view->payload.end(), tcp->payload.begin(), tcp->payload.end()));
    CHECK(view->seq == tcp->seq);
    std::array<uint8_t, segment_mac_bytes> found{};
    REQUIRE(find_segment_mac(view->options, found) == MacOptionLookup::found);
    CHECK(found == sample_mac);
    CHECK(find_segment_mac(tcp->options, found) == MacOptionLookup::absent);
  }
}

TEST_CASE("describe_own_tcp_packet reads what check_ip_packet reads, without the sums") {
  auto packet = ipv4_segment(300, {2, 4, 0x05, 0xb4});
  auto checked = check_ip_packet(packet);
  REQUIRE(checked);
  auto own = describe_own_tcp_packet(packet);
  REQUIRE(own);
  CHECK(own->length == checked->length);
  CHECK(own->transport_offset == checked->transport_offset);
  CHECK(own->version == 4);
  CHECK_FALSE(describe_own_tcp_packet(std::span(packet).first(39)));
  auto udp = packet;
  udp[9] = 17;
  CHECK_FALSE(describe_own_tcp_packet(udp));
  auto too_long = packet;
  too_long[2] = 0xFF;  // total length beyond the buffer
  CHECK_FALSE(describe_own_tcp_packet(too_long));
}

TEST_CASE("IPv6: the payload length and checksum follow") {
  // Build an IPv6 packet by hand: header + 20-byte TCP header + 10 bytes.
  std::vector<uint8_t> packet(40 + 20 + 10, 0);
  packet[0] = 0x60;
  packet[5] = 30;
  packet[6] = 6;
  packet[7] = 64;
  auto src = *roam::IpAddress::parse("2001:db8:11::2");
  auto dst = *roam::IpAddress::parse("2001:db8:12::2");
  std::copy_n(src.bytes.begin(), 16, packet.begin() + 8);
  std::copy_n(dst.bytes.begin(), 16, packet.begin() + 24);
  packet[40 + 12] = 5 << 4;
  packet[40 + 13] = 0x10;
  uint32_t acc = pseudo_header_sum_v6(std::span<const uint8_t, 16>(packet.data() + 8, 16),
                                      std::span<const uint8_t, 16>(packet.data() + 24, 16), 6, 30);
  uint16_t sum = checksum_fold(checksum_add(acc, std::span<const uint8_t>(packet.data() + 40, 30)));
  packet[40 + 16] = static_cast<uint8_t>(sum >> 8);
  packet[40 + 17] = static_cast<uint8_t>(sum);
  auto info = check_ip_packet(packet);
  REQUIRE(info);
  auto tcp = parse_tcp_segment(packet, info.value());
  REQUIRE(tcp);
  std::vector<uint8_t> out(200);
  size_t length = append_segment_mac(packet, info.value(), *tcp, sample_mac, out);
  REQUIRE(length == packet.size() + 16);
  out.resize(length);
  CHECK(check_ip_packet(out));
}

TEST_CASE("no room: a TCP header already at 48+ bytes of options, or a small output buffer") {
  auto packet = ipv4_segment(10, std::vector<uint8_t>(32, 1));  // 32 bytes of no-ops: header 52
  auto info = check_ip_packet(packet);
  REQUIRE(info);
  auto tcp = parse_tcp_segment(packet, info.value());
  REQUIRE(tcp);
  std::vector<uint8_t> out(200);
  CHECK(append_segment_mac(packet, info.value(), *tcp, sample_mac, out) == 0);
  auto small = ipv4_segment(10);
  auto small_info = check_ip_packet(small);
  auto small_tcp = parse_tcp_segment(small, small_info.value());
  std::vector<uint8_t> tiny(small.size());
  CHECK(append_segment_mac(small, small_info.value(), *small_tcp, sample_mac, tiny) == 0);
  // Options ending with End of Option List: a receiver would never see ours after it.
  auto eol = ipv4_segment(10, {2, 4, 0x05, 0xb4, 0, 0, 0, 0});
  auto eol_info = check_ip_packet(eol);
  auto eol_tcp = parse_tcp_segment(eol, eol_info.value());
  CHECK(append_segment_mac(eol, eol_info.value(), *eol_tcp, sample_mac, out) == 0);
}

TEST_CASE("malformed option lists are reported, other experiments are ignored") {
  std::array<uint8_t, segment_mac_bytes> mac{};
  const std::vector<uint8_t> ours = {253, 16, 0x52, 0x53, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  CHECK(find_segment_mac(ours, mac) == MacOptionLookup::found);
  auto twice = ours;
  twice.insert(twice.end(), ours.begin(), ours.end());
  CHECK(find_segment_mac(twice, mac) == MacOptionLookup::malformed);
  std::vector<uint8_t> short_length = {253, 8, 0x52, 0x53, 1, 2, 3, 4};
  CHECK(find_segment_mac(short_length, mac) == MacOptionLookup::malformed);
  std::vector<uint8_t> overrun = {253, 40, 0x52, 0x53};
  CHECK(find_segment_mac(overrun, mac) == MacOptionLookup::malformed);
  std::vector<uint8_t> zero_length = {8, 0, 1, 1};
  CHECK(find_segment_mac(zero_length, mac) == MacOptionLookup::malformed);
  std::vector<uint8_t> other_experiment = {253, 6, 0x12, 0x34, 0, 0, 1, 1};
  CHECK(find_segment_mac(other_experiment, mac) == MacOptionLookup::absent);
  std::vector<uint8_t> end_then_junk = {0, 253, 99};
  CHECK(find_segment_mac(end_then_junk, mac) == MacOptionLookup::absent);
}

}  // namespace
