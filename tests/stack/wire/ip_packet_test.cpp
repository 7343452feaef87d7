// Tests for stack/wire/ip_packet: real captured packets pass; every malformed kind is dropped.
#include "stack/wire/ip_packet.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "stack/wire/tcp_header.hpp"

namespace {

using roam::wire::check_ip_packet;
using roam::wire::PacketError;
using Bytes = std::vector<uint8_t>;

Bytes from_hex(std::string_view hex) {
  Bytes out;
  auto nibble = [](char c) { return static_cast<uint8_t>(c <= '9' ? c - '0' : c - 'a' + 10); };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>((nibble(hex[i]) << 4) | nibble(hex[i + 1])));
  }
  return out;
}

// Packets Linux wrote into a TUN device in a scratch network namespace (10.9.0.1 ->
// 10.9.0.2, fd00:9::1 -> fd00:9::2); a TUN device has no checksum offload, so every
// checksum is complete. Checksums were also verified independently (Python).
// TCP SYN to port 8080 with MSS, SACK-permitted, timestamps and window scale options.
constexpr std::string_view ipv4_tcp_syn_hex =
    "4500003c8f314000400697760a0900010a090002c2141f9035bd3c3200000000a002faf019d10000"
    "020405b40402080ad5cef5c3000000000103030a";
// TCP SYN to port 443.
constexpr std::string_view ipv6_tcp_syn_hex =
    "600c420700280640fd000009000000000000000000000001fd000009000000000000000000000002"
    "cd0c01bb3cdf8c4f00000000a002fd20d41b0000020405a00402080a81a26325000000000103030a";
// UDP datagram "roam" to port 5353.
constexpr std::string_view ipv4_udp_hex = "450000209a52400040118c660a0900010a0900029e9314e9000c6468726f616d";
// UDP datagram "roam6" to port 5353 (odd length: exercises the checksum padding).
constexpr std::string_view ipv6_udp_hex =
    "600dcadd000d1140fd000009000000000000000000000001fd0000090000000000000000000000029d05"
    "14e9000d49f2726f616d36";
// ICMP echo reply from the kernel.
constexpr std::string_view ipv4_icmp_hex = "45000024a85b00004001be690a0900010a09000200003b1d12340001726f616d70696e67";
// ICMPv6 echo reply from the kernel.
constexpr std::string_view ipv6_icmp_hex =
    "60077b9700103a40fd000009000000000000000000000001fd000009000000000000000000000002"
    "8100bfbb12340001726f616d70696e67";

constexpr std::string_view all_valid_hex[] = {ipv4_tcp_syn_hex, ipv6_tcp_syn_hex, ipv4_udp_hex,
                                              ipv6_udp_hex,     ipv4_icmp_hex,    ipv6_icmp_hex};

// Independent of the code under test: RFC 1071 section 4.1, word by word.
uint16_t reference_checksum(const Bytes& bytes, size_t begin, size_t end, uint64_t sum = 0) {
  for (size_t i = begin; i < end; i += 2) {
    sum += (uint32_t{bytes[i]} << 8) | (i + 1 < end ? bytes[i + 1] : 0u);
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

void put16(Bytes& b, size_t at, uint32_t v) {
  b[at] = static_cast<uint8_t>(v >> 8);
  b[at + 1] = static_cast<uint8_t>(v);
}

uint16_t get16(const Bytes& b, size_t at) {
  return static_cast<uint16_t>((b[at] << 8) | b[at + 1]);
}

// Recomputes the IPv4 header checksum after a test edited the header.
void fix_ipv4_checksum(Bytes& p) {
  const size_t header_length = static_cast<size_t>(p[0] & 0x0f) * 4;
  put16(p, 10, 0);
  put16(p, 10, reference_checksum(p, 0, header_length));
}

// Recomputes the transport checksum, stored `field` bytes into the transport header, after
// a test edited the transport header.
void fix_transport_checksum(Bytes& p, size_t field) {
  const bool v4 = (p[0] >> 4) == 4;
  const size_t offset = v4 ? static_cast<size_t>(p[0] & 0x0f) * 4 : 40;
  const size_t end = v4 ? get16(p, 2) : 40u + get16(p, 4);
  const uint8_t protocol = v4 ? p[9] : p[6];
  const uint64_t length = end - offset;
  uint64_t pseudo = 0;
  if (v4 && protocol != 1) {
    for (size_t i = 12; i < 20; i += 2) pseudo += get16(p, i);
    pseudo += protocol + length;
  } else if (!v4) {
    for (size_t i = 8; i < 40; i += 2) pseudo += get16(p, i);
    pseudo += (length >> 16) + (length & 0xffff) + protocol;
  }
  put16(p, offset + field, 0);
  put16(p, offset + field, reference_checksum(p, offset, end, pseudo));
}

PacketError error_of(const Bytes& p) {
  const auto r = check_ip_packet(p);
  REQUIRE_FALSE(r.has_value());
  return r.error();
}

}  // namespace

TEST_CASE("captured IPv4 and IPv6 packets pass with the right info") {
  struct Expected {
    std::string_view hex;
    uint8_t version, protocol;
    uint16_t length, transport_offset;
  };
  const Expected cases[] = {
      {ipv4_tcp_syn_hex, 4, 6, 60, 20}, {ipv6_tcp_syn_hex, 6, 6, 80, 40}, {ipv4_udp_hex, 4, 17, 32, 20},
      {ipv6_udp_hex, 6, 17, 53, 40},    {ipv4_icmp_hex, 4, 1, 36, 20},    {ipv6_icmp_hex, 6, 58, 56, 40},
  };
  for (const auto& c : cases) {
    CAPTURE(c.hex);
    const auto packet = from_hex(c.hex);
    const auto r = check_ip_packet(packet);
    REQUIRE(r.has_value());
    CHECK(r->version == c.version);
    CHECK(r->protocol == c.protocol);
    CHECK(r->length == c.length);
    CHECK(r->length == packet.size());
    CHECK(r->transport_offset == c.transport_offset);
  }
}

TEST_CASE("trailing bytes beyond the IP length are ignored") {
  for (auto hex : all_valid_hex) {
    auto packet = from_hex(hex);
    const size_t length = packet.size();
    packet.insert(packet.end(), {0xde, 0xad, 0xbe, 0xef, 0x01});
    const auto r = check_ip_packet(packet);
    REQUIRE(r.has_value());
    CHECK(r->length == length);
  }
}

TEST_CASE("every truncation of a valid packet is rejected") {
  for (auto hex : all_valid_hex) {
    const auto packet = from_hex(hex);
    for (size_t length = 0; length < packet.size(); ++length) {
      const Bytes truncated(packet.begin(), packet.begin() + static_cast<std::ptrdiff_t>(length));
      const auto r = check_ip_packet(truncated);
      CAPTURE(hex);
      CAPTURE(length);
      REQUIRE_FALSE(r.has_value());
      const size_t fixed = (packet[0] >> 4) == 4 ? 20 : 40;
      CHECK(r.error() == (length < fixed ? PacketError::too_short : PacketError::bad_total_length));
    }
  }
}

TEST_CASE("wrong version is rejected") {
  for (uint8_t version : std::initializer_list<uint8_t>{0, 1, 5, 7, 15}) {
    auto packet = from_hex(ipv4_tcp_syn_hex);
    packet[0] = static_cast<uint8_t>((version << 4) | (packet[0] & 0x0f));
    CHECK(error_of(packet) == PacketError::bad_version);
  }
  // A version byte alone, or an IPv6 header claiming version 4, is still judged.
  CHECK(error_of(Bytes{0x60}) == PacketError::too_short);
  auto v6 = from_hex(ipv6_tcp_syn_hex);
  v6[0] = 0x40;  // now parsed as IPv4 with IHL 0
  CHECK(error_of(v6) == PacketError::bad_header_length);
}

TEST_CASE("IPv4 header length below 5 words is rejected") {
  for (uint8_t ihl = 0; ihl < 5; ++ihl) {
    auto packet = from_hex(ipv4_tcp_syn_hex);
    packet[0] = static_cast<uint8_t>(0x40 | ihl);
    fix_ipv4_checksum(packet);
    CHECK(error_of(packet) == PacketError::bad_header_length);
  }
}

TEST_CASE("IPv4 header options are skipped") {
  // Insert one word of NOP options (RFC 791 option type 1) into the IP header.
  auto packet = from_hex(ipv4_tcp_syn_hex);
  packet.insert(packet.begin() + 20, {1, 1, 1, 1});
  packet[0] = 0x46;
  put16(packet, 2, static_cast<uint32_t>(packet.size()));
  fix_ipv4_checksum(packet);
  const auto r = check_ip_packet(packet);
  REQUIRE(r.has_value());
  CHECK(r->transport_offset == 24);
  CHECK(r->length == 64);
}

TEST_CASE("IPv4 total length above the buffer or below the header is rejected") {
  auto longer = from_hex(ipv4_tcp_syn_hex);
  put16(longer, 2, static_cast<uint32_t>(longer.size() + 1));
  fix_ipv4_checksum(longer);
  CHECK(error_of(longer) == PacketError::bad_total_length);

  auto shorter = from_hex(ipv4_tcp_syn_hex);
  put16(shorter, 2, 19);
  fix_ipv4_checksum(shorter);
  CHECK(error_of(shorter) == PacketError::bad_total_length);

  // IHL 15 (60 bytes) but a total length of 40.
  auto big_header = from_hex(ipv4_tcp_syn_hex);
  big_header[0] = 0x4f;
  put16(big_header, 2, 40);
  fix_ipv4_checksum(big_header);
  CHECK(error_of(big_header) == PacketError::bad_total_length);
}

TEST_CASE("IPv6 payload length above the buffer is rejected") {
  auto packet = from_hex(ipv6_tcp_syn_hex);
  put16(packet, 4, get16(packet, 4) + 1u);
  CHECK(error_of(packet) == PacketError::bad_total_length);
  put16(packet, 4, 0xffff);
  packet.resize(40 + 0xffff);  // fits the buffer but not PacketInfo::length
  CHECK(error_of(packet) == PacketError::bad_total_length);
}

TEST_CASE("corrupted IPv4 header checksum is rejected") {
  for (auto hex : {ipv4_tcp_syn_hex, ipv4_udp_hex, ipv4_icmp_hex}) {
    auto packet = from_hex(hex);
    packet[10] ^= 0x01;
    CHECK(error_of(packet) == PacketError::bad_ip_checksum);
    packet = from_hex(hex);
    packet[8] = static_cast<uint8_t>(packet[8] - 1);  // TTL changed without updating
    CHECK(error_of(packet) == PacketError::bad_ip_checksum);
  }
}

TEST_CASE("corrupted transport checksum or payload is rejected") {
  for (auto hex : all_valid_hex) {
    CAPTURE(hex);
    const auto packet = from_hex(hex);
    const size_t offset = (packet[0] >> 4) == 4 ? 20 : 40;
    // Flip one bit in every transport byte that is not a length field the header check
    // reads first; the checksum must catch each.
    for (size_t i = offset; i < packet.size(); ++i) {
      const bool is_udp = packet[(packet[0] >> 4) == 4 ? 9 : 6] == 17;
      const bool is_tcp = packet[(packet[0] >> 4) == 4 ? 9 : 6] == 6;
      if (is_tcp && i == offset + 12) continue;                      // data offset
      if (is_udp && (i == offset + 4 || i == offset + 5)) continue;  // UDP length
      auto corrupted = packet;
      corrupted[i] ^= 0x10;
      CAPTURE(i);
      CHECK(error_of(corrupted) == PacketError::bad_transport_checksum);
    }
  }
  // The source address is covered by the pseudo header (TCP/UDP/ICMPv6).
  for (auto hex : {ipv4_tcp_syn_hex, ipv4_udp_hex}) {
    auto packet = from_hex(hex);
    packet[15] ^= 0x01;
    fix_ipv4_checksum(packet);
    CHECK(error_of(packet) == PacketError::bad_transport_checksum);
  }
  for (auto hex : {ipv6_tcp_syn_hex, ipv6_udp_hex, ipv6_icmp_hex}) {
    auto packet = from_hex(hex);
    packet[23] ^= 0x01;
    CHECK(error_of(packet) == PacketError::bad_transport_checksum);
  }
}

TEST_CASE("ICMPv4 checksum has no pseudo header") {
  // Changing the addresses (and the IP checksum) leaves ICMPv4 valid.
  auto packet = from_hex(ipv4_icmp_hex);
  packet[15] ^= 0x01;
  fix_ipv4_checksum(packet);
  CHECK(check_ip_packet(packet).has_value());
}

TEST_CASE("IPv4 fragments are rejected, DF alone is fine") {
  const auto original = from_hex(ipv4_tcp_syn_hex);
  REQUIRE((get16(original, 6) & 0x4000) != 0);  // captured with DF
  CHECK(check_ip_packet(original).has_value());

  auto first_fragment = original;
  put16(first_fragment, 6, 0x2000);  // MF, offset 0
  fix_ipv4_checksum(first_fragment);
  CHECK(error_of(first_fragment) == PacketError::fragment);

  for (uint32_t offset : {1u, 0x100u, 0x1fffu}) {
    auto later = original;
    put16(later, 6, offset);  // last fragment: MF clear, offset != 0
    fix_ipv4_checksum(later);
    CHECK(error_of(later) == PacketError::fragment);
  }
}

TEST_CASE("unknown protocols and IPv6 extension headers are rejected") {
  for (uint8_t protocol : std::initializer_list<uint8_t>{0, 2, 4, 41, 47, 50, 58, 132, 255}) {
    auto packet = from_hex(ipv4_tcp_syn_hex);
    packet[9] = protocol;  // 58 (ICMPv6) is not valid over IPv4
    fix_ipv4_checksum(packet);
    CAPTURE(int{protocol});
    CHECK(error_of(packet) == PacketError::unknown_protocol);
  }
  // Hop-by-hop, routing, fragment, destination options, no next header, ICMPv4.
  for (uint8_t next_header : std::initializer_list<uint8_t>{0, 43, 44, 60, 59, 1, 47}) {
    auto packet = from_hex(ipv6_tcp_syn_hex);
    packet[6] = next_header;
    CAPTURE(int{next_header});
    CHECK(error_of(packet) == PacketError::unknown_protocol);
  }
}

TEST_CASE("TCP data offset below 5 or beyond the packet is rejected") {
  for (auto hex : {ipv4_tcp_syn_hex, ipv6_tcp_syn_hex}) {
    const auto original = from_hex(hex);
    const size_t tcp = (original[0] >> 4) == 4 ? 20 : 40;
    for (uint8_t data_offset : std::initializer_list<uint8_t>{0, 1, 4, 11, 15}) {
      auto packet = original;
      packet[tcp + 12] = static_cast<uint8_t>(data_offset << 4);
      fix_transport_checksum(packet, 16);  // so only the header length is wrong
      CAPTURE(int{data_offset});
      CHECK(error_of(packet) == PacketError::bad_transport_header);
    }
    // Data offset exactly at the end of the packet is fine (a SYN with options, no data).
    CHECK(check_ip_packet(original).has_value());
  }
}

TEST_CASE("TCP header shorter than 20 bytes is rejected") {
  auto packet = from_hex(ipv4_tcp_syn_hex);
  put16(packet, 2, 20 + 19);
  fix_ipv4_checksum(packet);
  CHECK(error_of(packet) == PacketError::bad_transport_header);

  auto v6 = from_hex(ipv6_tcp_syn_hex);
  put16(v6, 4, 19);
  CHECK(error_of(v6) == PacketError::bad_transport_header);
}

TEST_CASE("UDP length inconsistent with the IP payload is rejected") {
  for (auto hex : {ipv4_udp_hex, ipv6_udp_hex}) {
    const auto original = from_hex(hex);
    const size_t udp = (original[0] >> 4) == 4 ? 20 : 40;
    const uint16_t length = get16(original, udp + 4);
    for (uint32_t wrong : {uint32_t{length} - 1, uint32_t{length} + 1, 0u, 7u, 0xffffu}) {
      auto packet = original;
      put16(packet, udp + 4, wrong);
      CAPTURE(wrong);
      CHECK(error_of(packet) == PacketError::bad_transport_header);
    }
    // IP payload shorter than the UDP header.
    auto tiny = original;
    if ((tiny[0] >> 4) == 4) {
      put16(tiny, 2, 20 + 7);
      fix_ipv4_checksum(tiny);
    } else {
      put16(tiny, 4, 7);
    }
    CHECK(error_of(tiny) == PacketError::bad_transport_header);
  }
}

TEST_CASE("UDP zero checksum is allowed over IPv4 only") {
  auto v4 = from_hex(ipv4_udp_hex);
  put16(v4, 26, 0);
  v4[31] ^= 0xff;  // payload no longer matches any checksum, and none is checked
  CHECK(check_ip_packet(v4).has_value());

  auto v6 = from_hex(ipv6_udp_hex);
  put16(v6, 46, 0);
  CHECK(error_of(v6) == PacketError::bad_transport_checksum);
}

TEST_CASE("UDP checksum computed as zero is carried as 0xffff and accepted") {
  // RFC 768: a computed checksum of 0 is sent as all ones. Pick the payload's last word
  // so that the computed checksum is 0.
  for (auto hex : {ipv4_udp_hex, ipv6_udp_hex}) {
    auto packet = from_hex(hex);
    const size_t udp = (packet[0] >> 4) == 4 ? 20 : 40;
    bool found = false;
    for (uint32_t word = 0; word <= 0xffff && !found; ++word) {
      put16(packet, udp + 8, word);
      fix_transport_checksum(packet, 6);
      found = get16(packet, udp + 6) == 0;
    }
    REQUIRE(found);
    put16(packet, udp + 6, 0xffff);
    CHECK(check_ip_packet(packet).has_value());
  }
}

TEST_CASE("ICMP shorter than 8 bytes is rejected") {
  auto v4 = from_hex(ipv4_icmp_hex);
  put16(v4, 2, 20 + 7);
  fix_ipv4_checksum(v4);
  CHECK(error_of(v4) == PacketError::bad_transport_header);

  auto v6 = from_hex(ipv6_icmp_hex);
  put16(v6, 4, 4);
  CHECK(error_of(v6) == PacketError::bad_transport_header);
}

TEST_CASE("every error has a distinct name") {
  std::set<std::string_view> names;
  for (size_t i = 0; i < roam::wire::packet_error_count; ++i) {
    const auto name = roam::wire::to_string(static_cast<PacketError>(i));
    CHECK(name != "unknown");
    names.insert(name);
  }
  CHECK(names.size() == roam::wire::packet_error_count);
  CHECK(roam::wire::to_string(PacketError::bad_transport_checksum) == "bad_transport_checksum");
}

TEST_CASE("random corruption of valid packets never crashes") {
  // Sanitizer builds turn any out-of-range read into a failure here.
  std::mt19937 rng(2024);
  for (auto hex : all_valid_hex) {
    const auto original = from_hex(hex);
    for (int round = 0; round < 2000; ++round) {
      auto packet = original;
      const int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        packet[rng() % packet.size()] = static_cast<uint8_t>(rng());
      }
      packet.resize(rng() % (packet.size() + 8));
      const auto r = check_ip_packet(packet);
      if (r && r->protocol == 6) {
        const auto tcp = roam::wire::parse_tcp_segment(packet, *r);
        CHECK(tcp.has_value());
      }
    }
  }
}
