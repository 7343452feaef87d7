// peek_syn: a pure SYN's flow and ISN from raw IPv4 and IPv6 packets; everything else
// (SYN-ACK, RST, UDP, later fragments, extension headers, every truncation) is nullopt.
#include "stack/defense/syn_peek.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

using roam::defense::peek_syn;

std::vector<uint8_t> ipv4_syn(uint8_t flags = 0x02) {
  std::vector<uint8_t> p(40, 0);
  p[0] = 0x45;
  p[3] = 40;
  p[8] = 64;
  p[9] = 6;
  p[12] = 198, p[13] = 19, p[14] = 7, p[15] = 9;   // source
  p[16] = 198, p[17] = 18, p[18] = 12, p[19] = 2;  // destination
  p[20] = 0xc3, p[21] = 0x50;                      // source port 50000
  p[22] = 0x1b, p[23] = 0x58;                      // destination port 7000
  p[24] = 0x12, p[25] = 0x34, p[26] = 0x56, p[27] = 0x78;
  p[32] = 0x50;
  p[33] = flags;
  return p;
}

std::vector<uint8_t> ipv6_syn() {
  std::vector<uint8_t> p(60, 0);
  p[0] = 0x60;
  p[5] = 20;
  p[6] = 6;
  p[7] = 64;
  p[8] = 0x20, p[9] = 0x01, p[10] = 0x0d, p[11] = 0xb8, p[23] = 1;   // 2001:db8::1
  p[24] = 0x20, p[25] = 0x01, p[26] = 0x0d, p[27] = 0xb8, p[39] = 2;  // 2001:db8::2
  p[40] = 0xc3, p[41] = 0x51;
  p[42] = 0x1b, p[43] = 0x58;
  p[44] = 0xde, p[45] = 0xad, p[46] = 0xbe, p[47] = 0xef;
  p[52] = 0x50;
  p[53] = 0x02;
  return p;
}

}  // namespace

TEST_CASE("peek_syn reads a pure IPv4 SYN's flow (local = destination) and ISN") {
  auto syn = peek_syn(ipv4_syn());
  REQUIRE(syn);
  CHECK(syn->flow.version == 4);
  CHECK(syn->flow.remote[0] == 198);
  CHECK(syn->flow.remote[3] == 9);
  CHECK(syn->flow.local[2] == 12);
  CHECK(syn->flow.local[4] == 0);  // IPv4 in the first 4 bytes, as TcpSegmentView
  CHECK(syn->flow.remote_port == 50000);
  CHECK(syn->flow.local_port == 7000);
  CHECK(syn->isn == 0x12345678u);
}

TEST_CASE("peek_syn reads a pure IPv6 SYN") {
  auto syn = peek_syn(ipv6_syn());
  REQUIRE(syn);
  CHECK(syn->flow.version == 6);
  CHECK(syn->flow.remote[15] == 1);
  CHECK(syn->flow.local[15] == 2);
  CHECK(syn->flow.remote_port == 50001);
  CHECK(syn->isn == 0xdeadbeefu);
}

TEST_CASE("peek_syn refuses what is not a pure SYN") {
  CHECK_FALSE(peek_syn(ipv4_syn(0x12)));  // SYN-ACK
  CHECK_FALSE(peek_syn(ipv4_syn(0x06)));  // SYN+RST
  CHECK_FALSE(peek_syn(ipv4_syn(0x10)));  // ACK
  auto udp = ipv4_syn();
  udp[9] = 17;
  CHECK_FALSE(peek_syn(udp));
  auto fragment = ipv4_syn();
  fragment[7] = 1;  // offset 8 bytes: no TCP header here
  CHECK_FALSE(peek_syn(fragment));
  auto bad_ihl = ipv4_syn();
  bad_ihl[0] = 0x44;
  CHECK_FALSE(peek_syn(bad_ihl));
  auto extension = ipv6_syn();
  extension[6] = 0;  // hop-by-hop options first
  CHECK_FALSE(peek_syn(extension));
  CHECK_FALSE(peek_syn({}));
  std::vector<uint8_t> other(40, 0);
  other[0] = 0x55;
  CHECK_FALSE(peek_syn(other));
}

TEST_CASE("peek_syn refuses every truncation and reads nothing beyond the packet") {
  for (const auto& whole : {ipv4_syn(), ipv6_syn()}) {
    for (size_t n = 0; n < whole.size(); ++n) {
      // A copy of exactly n bytes: ASan reports any read past it.
      std::vector<uint8_t> cut(whole.begin(), whole.begin() + static_cast<std::ptrdiff_t>(n));
      CHECK_FALSE(peek_syn(cut));
    }
  }
}
