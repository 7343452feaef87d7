// Tests for stack/wire/tcp_header: decode captured SYNs, re-encode to the same bytes, round-trip.
#include "stack/wire/tcp_header.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

namespace {

using roam::wire::build_ipv4_tcp;
using roam::wire::check_ip_packet;
using roam::wire::Ipv4TcpFields;
using roam::wire::PacketError;
using roam::wire::PacketInfo;
using roam::wire::parse_tcp_segment;
using roam::wire::TcpSegmentView;
using Bytes = std::vector<uint8_t>;

Bytes from_hex(std::string_view hex) {
  Bytes out;
  auto nibble = [](char c) { return static_cast<uint8_t>(c <= '9' ? c - '0' : c - 'a' + 10); };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>((nibble(hex[i]) << 4) | nibble(hex[i + 1])));
  }
  return out;
}

// Linux SYNs captured from a TUN device (see ip_packet_test.cpp).
constexpr std::string_view ipv4_tcp_syn_hex =
    "4500003c8f314000400697760a0900010a090002c2141f9035bd3c3200000000a002faf019d10000"
    "020405b40402080ad5cef5c3000000000103030a";
constexpr std::string_view ipv6_tcp_syn_hex =
    "600c420700280640fd000009000000000000000000000001fd000009000000000000000000000002"
    "cd0c01bb3cdf8c4f00000000a002fd20d41b0000020405a00402080a81a26325000000000103030a";
constexpr std::string_view ipv4_udp_hex = "450000209a52400040118c660a0900010a0900029e9314e9000c6468726f616d";

// RFC 1071 word-by-word reference, independent of stack/wire/checksum.
uint16_t reference_checksum(const Bytes& bytes, size_t begin, size_t end, uint64_t sum = 0) {
  for (size_t i = begin; i < end; i += 2) {
    sum += (uint32_t{bytes[i]} << 8) | (i + 1 < end ? bytes[i + 1] : 0u);
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

bool same(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

}  // namespace

TEST_CASE("flag bits have their RFC 9293 values") {
  static_assert(TcpSegmentView::FIN == 0x01 && TcpSegmentView::SYN == 0x02);
  static_assert(TcpSegmentView::RST == 0x04 && TcpSegmentView::PSH == 0x08);
  static_assert(TcpSegmentView::ACK == 0x10 && TcpSegmentView::URG == 0x20);
  TcpSegmentView view{};
  view.flags = TcpSegmentView::SYN | TcpSegmentView::ACK;
  CHECK(view.has(TcpSegmentView::SYN));
  CHECK(view.has(TcpSegmentView::SYN | TcpSegmentView::ACK));
  CHECK_FALSE(view.has(TcpSegmentView::FIN));
}

TEST_CASE("parse a captured IPv4 SYN") {
  const auto packet = from_hex(ipv4_tcp_syn_hex);
  const auto info = check_ip_packet(packet);
  REQUIRE(info.has_value());
  const auto r = parse_tcp_segment(packet, *info);
  REQUIRE(r.has_value());
  const TcpSegmentView& tcp = *r;
  CHECK(tcp.version == 4);
  CHECK(tcp.address_size() == 4);
  CHECK(tcp.src_address == std::array<uint8_t, 16>{10, 9, 0, 1});
  CHECK(tcp.dst_address == std::array<uint8_t, 16>{10, 9, 0, 2});
  CHECK(tcp.src_port == 49684);
  CHECK(tcp.dst_port == 8080);
  CHECK(tcp.seq == 0x35bd3c32u);
  CHECK(tcp.ack == 0);
  CHECK(tcp.flags == TcpSegmentView::SYN);
  CHECK(tcp.window == 64240);
  CHECK(tcp.header_length == 40);
  REQUIRE(tcp.options.size() == 20);
  CHECK(same(tcp.options.first(4), Bytes{0x02, 0x04, 0x05, 0xb4}));  // MSS 1460
  CHECK(tcp.options.data() == packet.data() + 40);
  CHECK(tcp.payload.empty());
}

TEST_CASE("parse a captured IPv6 SYN") {
  const auto packet = from_hex(ipv6_tcp_syn_hex);
  const auto info = check_ip_packet(packet);
  REQUIRE(info.has_value());
  const auto r = parse_tcp_segment(packet, *info);
  REQUIRE(r.has_value());
  CHECK(r->version == 6);
  CHECK(r->address_size() == 16);
  CHECK(same(r->src_address, std::span<const uint8_t>(packet).subspan(8, 16)));
  CHECK(same(r->dst_address, std::span<const uint8_t>(packet).subspan(24, 16)));
  CHECK(r->src_address[0] == 0xfd);
  CHECK(r->src_address[15] == 1);
  CHECK(r->dst_address[15] == 2);
  CHECK(r->src_port == 52492);
  CHECK(r->dst_port == 443);
  CHECK(r->seq == 0x3cdf8c4fu);
  CHECK(r->flags == TcpSegmentView::SYN);
  CHECK(r->window == 64800);
  CHECK(r->header_length == 40);
  CHECK(same(r->options.first(4), Bytes{0x02, 0x04, 0x05, 0xa0}));  // MSS 1440
  CHECK(r->payload.empty());
}

TEST_CASE("payload stops at the IP length, not the buffer") {
  Bytes out(200, 0xee);
  const Bytes payload = {'a', 'b', 'c'};
  const size_t n = build_ipv4_tcp(out, Ipv4TcpFields{.src = {1, 2, 3, 4}, .dst = {5, 6, 7, 8}}, payload);
  REQUIRE(n == 43);
  const auto info = check_ip_packet(out);  // 157 trailing 0xee bytes
  REQUIRE(info.has_value());
  const auto r = parse_tcp_segment(out, *info);
  REQUIRE(r.has_value());
  CHECK(same(r->payload, payload));
}

TEST_CASE("parse rejects a non-TCP or inconsistent PacketInfo without reading out of range") {
  const auto udp = from_hex(ipv4_udp_hex);
  const auto udp_info = check_ip_packet(udp);
  REQUIRE(udp_info.has_value());
  CHECK(parse_tcp_segment(udp, *udp_info).error() == PacketError::unknown_protocol);

  const auto packet = from_hex(ipv4_tcp_syn_hex);
  const PacketInfo good = *check_ip_packet(packet);
  const std::span<const uint8_t> bytes(packet);

  PacketInfo info = good;
  info.length = static_cast<uint16_t>(packet.size() + 1);
  CHECK(parse_tcp_segment(bytes, info).error() == PacketError::bad_total_length);

  info = good;
  info.version = 5;
  CHECK(parse_tcp_segment(bytes, info).error() == PacketError::bad_version);

  info = good;
  info.transport_offset = 50;  // leaves 10 bytes: less than a TCP header
  CHECK(parse_tcp_segment(bytes, info).error() == PacketError::bad_transport_header);

  info = good;
  info.transport_offset = 0xffff;
  CHECK(parse_tcp_segment(bytes, info).error() == PacketError::bad_transport_header);

  info = good;
  info.transport_offset = 4;
  CHECK(parse_tcp_segment(bytes, info).error() == PacketError::too_short);

  info = good;
  info.version = 6;  // an IPv4 packet of 60 bytes described as IPv6 with offset 20
  CHECK(parse_tcp_segment(bytes, info).error() == PacketError::too_short);

  info = good;
  info.length = 30;
  CHECK(parse_tcp_segment(bytes, info).error() == PacketError::bad_transport_header);

  info = good;
  info.length = 50;  // TCP data offset 40 no longer fits in the 30 bytes left
  CHECK(parse_tcp_segment(bytes, info).error() == PacketError::bad_transport_header);

  CHECK(parse_tcp_segment({}, good).error() == PacketError::bad_total_length);
}

TEST_CASE("building the captured IPv4 SYN's fields gives the captured bytes") {
  const auto captured = from_hex(ipv4_tcp_syn_hex);
  const auto view = *parse_tcp_segment(captured, *check_ip_packet(captured));
  Ipv4TcpFields fields;
  std::copy_n(view.src_address.begin(), 4, fields.src.begin());
  std::copy_n(view.dst_address.begin(), 4, fields.dst.begin());
  fields.src_port = view.src_port;
  fields.dst_port = view.dst_port;
  fields.seq = view.seq;
  fields.ack = view.ack;
  fields.flags = view.flags;
  fields.window = view.window;
  fields.ttl = captured[8];
  fields.identification = static_cast<uint16_t>((captured[4] << 8) | captured[5]);
  fields.options = view.options;

  Bytes out(1500);
  const size_t n = build_ipv4_tcp(out, fields, view.payload);
  REQUIRE(n == captured.size());
  out.resize(n);
  CHECK(out == captured);
}

TEST_CASE("build_ipv4_tcp round-trips through check_ip_packet and parse_tcp_segment") {
  const Bytes options = {0x02, 0x04, 0x05, 0xb4, 0x01, 0x03, 0x03, 0x07, 0x04};  // MSS, NOP, WS, SACK-ok head
  for (size_t payload_size : {0u, 1u, 2u, 5u, 1000u, 1459u}) {
    Bytes payload(payload_size);
    for (size_t i = 0; i < payload_size; ++i) payload[i] = static_cast<uint8_t>(i * 7 + 3);
    Ipv4TcpFields fields{.src = {192, 0, 2, 2},
                         .dst = {198, 51, 100, 9},
                         .src_port = 40000,
                         .dst_port = 22,
                         .seq = 0xfffffff0u,
                         .ack = 0x01020304u,
                         .flags = TcpSegmentView::ACK | TcpSegmentView::PSH,
                         .window = 0xffff,
                         .ttl = 17,
                         .options = options};
    Bytes out(1600, 0xaa);
    const size_t n = build_ipv4_tcp(out, fields, payload);
    CAPTURE(payload_size);
    REQUIRE(n == 20 + 20 + 12 + payload_size);
    CHECK(n == roam::wire::ipv4_tcp_packet_size(options.size(), payload_size));

    const std::span<const uint8_t> packet(out.data(), n);
    // Independent checksum checks: both fold to zero with the reference implementation.
    const Bytes copy(packet.begin(), packet.end());
    CHECK(reference_checksum(copy, 0, 20) == 0);
    uint64_t pseudo = (192 << 8) + 0 + (2 << 8) + 2 + (198 << 8) + 51 + (100 << 8) + 9 + 6 + (n - 20);
    CHECK(reference_checksum(copy, 20, n, pseudo) == 0);

    const auto info = check_ip_packet(packet);
    REQUIRE(info.has_value());
    CHECK(info->version == 4);
    CHECK(info->protocol == 6);
    CHECK(info->length == n);
    CHECK(info->transport_offset == 20);
    CHECK(packet[8] == 17);

    const auto r = parse_tcp_segment(packet, *info);
    REQUIRE(r.has_value());
    CHECK(same(std::span(r->src_address).first(4), fields.src));
    CHECK(same(std::span(r->dst_address).first(4), fields.dst));
    CHECK(r->src_port == fields.src_port);
    CHECK(r->dst_port == fields.dst_port);
    CHECK(r->seq == fields.seq);
    CHECK(r->ack == fields.ack);
    CHECK(r->flags == fields.flags);
    CHECK(r->window == fields.window);
    CHECK(r->header_length == 32);
    REQUIRE(r->options.size() == 12);
    CHECK(same(r->options.first(options.size()), options));
    CHECK(std::all_of(r->options.begin() + static_cast<std::ptrdiff_t>(options.size()), r->options.end(),
                      [](uint8_t b) { return b == 0; }));  // End of Option List padding
    CHECK(same(r->payload, payload));
  }
}

TEST_CASE("build_ipv4_tcp refuses a too small buffer, too many options or a too large packet") {
  const Bytes payload(10, 1);
  Ipv4TcpFields fields{.src = {10, 0, 0, 1}, .dst = {10, 0, 0, 2}, .flags = TcpSegmentView::SYN};
  Bytes out(49, 0x5a);
  CHECK(build_ipv4_tcp(out, fields, payload) == 0);
  CHECK(std::all_of(out.begin(), out.end(), [](uint8_t b) { return b == 0x5a; }));  // untouched
  out.resize(50);
  CHECK(build_ipv4_tcp(out, fields, payload) == 50);
  CHECK(build_ipv4_tcp({}, fields, {}) == 0);

  const Bytes forty(40, 1);
  fields.options = forty;
  Bytes big(200);
  CHECK(build_ipv4_tcp(big, fields, {}) == 80);
  const auto info = check_ip_packet(std::span<const uint8_t>(big.data(), 80));
  REQUIRE(info.has_value());
  CHECK(parse_tcp_segment(big, *info)->header_length == 60);

  const Bytes forty_one(41, 1);
  fields.options = forty_one;
  CHECK(build_ipv4_tcp(big, fields, {}) == 0);
  CHECK(roam::wire::ipv4_tcp_packet_size(41, 0) == 0);

  fields.options = {};
  const Bytes huge(65535 - 40 + 1, 0);
  Bytes huge_out(70000);
  CHECK(build_ipv4_tcp(huge_out, fields, huge) == 0);
  CHECK(build_ipv4_tcp(huge_out, fields, std::span(huge).first(65535 - 40)) == 65535);
  CHECK(check_ip_packet(std::span<const uint8_t>(huge_out.data(), 65535)).has_value());
}
