// The NAT handover's synthetic segments (stack/wire/handover_segment): what the builders
// write is a valid packet that parses back to the same fields, with the options a NAT
// reads; the option parser refuses every malformed form.
#include "stack/wire/handover_segment.hpp"

#include <doctest/doctest.h>

#include <vector>

#include "stack/wire/ip_packet.hpp"
#include "stack/wire/tcp_header.hpp"

namespace {

using namespace roam::wire;
using roam::IpAddress;

HandoverSegment sample(int family, bool syn_ack) {
  HandoverSegment s;
  s.src = *IpAddress::parse(family == 4 ? "198.18.11.2" : "2001:db8:11::2");
  s.dst = *IpAddress::parse(family == 4 ? "198.18.13.2" : "2001:db8:13::2");
  s.src_port = 40000;
  s.dst_port = 7000;
  s.seq = 0xfffffff0;
  s.ack = syn_ack ? 12345 : 0;
  s.syn_ack = syn_ack;
  s.window = 65535;
  s.mss = 1460;
  s.window_scale = 7;
  s.option.connection_id = 0x1122334455667788ULL;
  s.option.rcv_nxt = 0xdeadbeef;
  for (size_t i = 0; i < s.option.tag.size(); ++i) s.option.tag[i] = static_cast<uint8_t>(i + 1);
  return s;
}

TEST_CASE("handover SYN and SYN-ACK are valid packets carrying MSS, window scale and our option") {
  for (int family : {4, 6}) {
    for (bool syn_ack : {false, true}) {
      CAPTURE(family);
      CAPTURE(syn_ack);
      HandoverSegment s = sample(family, syn_ack);
      std::vector<uint8_t> out(handover_packet_max_bytes);
      size_t length = build_handover_segment(out, s);
      REQUIRE(length > 0);
      out.resize(length);
      auto info = check_ip_packet(out);  // checksums included
      REQUIRE(info);
      auto tcp = parse_tcp_segment(out, info.value());
      REQUIRE(tcp);
      CHECK(tcp->src_port == 40000);
      CHECK(tcp->dst_port == 7000);
      CHECK(tcp->seq == 0xfffffff0);
      CHECK(tcp->ack == (syn_ack ? 12345u : 0u));
      CHECK(tcp->flags == (syn_ack ? (TcpSegmentView::SYN | TcpSegmentView::ACK) : TcpSegmentView::SYN));
      CHECK(tcp->window == 65535);
      CHECK(tcp->payload.empty());
      REQUIRE(tcp->options.size() == 36);
      CHECK(tcp->options[0] == 2);  // MSS 1460
      CHECK(((tcp->options[2] << 8) | tcp->options[3]) == 1460);
      CHECK(tcp->options[5] == 3);  // window scale 7
      CHECK(tcp->options[7] == 7);
      HandoverOption option;
      REQUIRE(find_handover_option(tcp->options, option) == MacOptionLookup::found);
      CHECK(option == s.option);
      // The segment MAC's option is a different experiment.
      std::array<uint8_t, segment_mac_bytes> mac{};
      CHECK(find_segment_mac(tcp->options, mac) == MacOptionLookup::absent);
    }
  }
}

TEST_CASE("a window update is a valid ACK with no payload and only our option") {
  BareAck a;
  a.src = *IpAddress::parse("198.18.13.2");
  a.dst = *IpAddress::parse("198.18.3.254");
  a.src_port = 7000;
  a.dst_port = 5555;
  a.seq = 7;
  a.ack = 9;
  a.window = 300;
  a.option.connection_id = 77;
  std::vector<uint8_t> out(handover_packet_max_bytes);
  size_t length = build_bare_ack(out, a);
  REQUIRE(length == 40 + handover_option_bytes);
  out.resize(length);
  auto info = check_ip_packet(out);
  REQUIRE(info);
  auto tcp = parse_tcp_segment(out, info.value());
  REQUIRE(tcp);
  CHECK(tcp->flags == TcpSegmentView::ACK);
  CHECK(tcp->seq == 7);
  CHECK(tcp->ack == 9);
  CHECK(tcp->window == 300);
  CHECK(tcp->payload.empty());
  HandoverOption option;
  REQUIRE(find_handover_option(tcp->options, option) == MacOptionLookup::found);
  CHECK(option == a.option);
}

TEST_CASE("mixed address families are refused") {
  HandoverSegment s = sample(4, false);
  s.dst = *IpAddress::parse("2001:db8::1");
  std::vector<uint8_t> out(handover_packet_max_bytes);
  CHECK(build_handover_segment(out, s) == 0);
  std::vector<uint8_t> small(20);
  CHECK(build_handover_segment(small, sample(4, false)) == 0);
}

TEST_CASE("the handover option parser: absent, found, and every malformed form") {
  const std::vector<uint8_t> ours = {253, 28, 0x52, 0x48, 1, 2, 3, 4, 5, 6, 7, 8,  0,  0,
                                     0,   9,  1,    2,    3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
  HandoverOption option;
  CHECK(find_handover_option({}, option) == MacOptionLookup::absent);
  std::vector<uint8_t> mss = {2, 4, 5, 0xb4};
  CHECK(find_handover_option(mss, option) == MacOptionLookup::absent);
  std::vector<uint8_t> with = mss;
  with.insert(with.end(), ours.begin(), ours.end());
  REQUIRE(find_handover_option(with, option) == MacOptionLookup::found);
  CHECK(option.connection_id == 0x0102030405060708ULL);
  CHECK(option.rcv_nxt == 9);
  CHECK(option.tag[11] == 12);

  std::vector<uint8_t> twice = ours;
  twice.insert(twice.end(), ours.begin(), ours.end());
  CHECK(find_handover_option(twice, option) == MacOptionLookup::malformed);
  std::vector<uint8_t> short_one = {253, 8, 0x52, 0x48, 1, 2, 3, 4};
  CHECK(find_handover_option(short_one, option) == MacOptionLookup::malformed);
  std::vector<uint8_t> cut(ours.begin(), ours.end() - 1);  // length says 28, 27 bytes there
  CHECK(find_handover_option(cut, option) == MacOptionLookup::malformed);
  std::vector<uint8_t> zero_length = {2, 0};
  CHECK(find_handover_option(zero_length, option) == MacOptionLookup::malformed);
  // After End of Option List nothing counts.
  std::vector<uint8_t> after_end = {0};
  after_end.insert(after_end.end(), ours.begin(), ours.end());
  CHECK(find_handover_option(after_end, option) == MacOptionLookup::absent);
  // Another experiment with the same kind is not ours.
  std::vector<uint8_t> other = ours;
  other[3] = 0x53;
  CHECK(find_handover_option(other, option) == MacOptionLookup::absent);
}

}  // namespace

namespace {

TEST_CASE("a glance at a TCP packet: its flags and whether its header has room for our option") {
  std::vector<uint8_t> syn(handover_packet_max_bytes);
  syn.resize(build_handover_segment(syn, sample(4, false)));
  auto info = check_ip_packet(syn);
  REQUIRE(info);
  auto glance = glance_tcp(syn, info.value());
  REQUIRE(glance);
  CHECK(glance->flags == TcpSegmentView::SYN);
  CHECK(glance->room_for_handover_option);

  Ipv4TcpFields plain;  // a carrier segment: no options
  plain.flags = TcpSegmentView::ACK;
  std::vector<uint8_t> ack(64);
  ack.resize(build_ipv4_tcp(ack, plain, {}));
  info = check_ip_packet(ack);
  REQUIRE(info);
  glance = glance_tcp(ack, info.value());
  REQUIRE(glance);
  CHECK(glance->flags == TcpSegmentView::ACK);
  CHECK_FALSE(glance->room_for_handover_option);
}

}  // namespace
