// Cutting a multi-MSS TCP segment into pieces: every piece is a packet a receiver accepts
// (lengths, IPv4 header checksum, TCP checksum when asked for), the pieces' payloads and
// sequence numbers put the original back together, FIN/PSH ride only on the last piece and
// CWR only on the first; out-of-range pieces and small buffers write nothing.
#include "stack/wire/tcp_segment_cut.hpp"

#include <doctest/doctest.h>

#include <vector>

#include "stack/wire/checksum.hpp"

namespace {

using namespace roam::wire;

std::vector<uint8_t> payload_of(size_t size) {
  std::vector<uint8_t> payload(size);
  for (size_t i = 0; i < size; ++i) payload[i] = static_cast<uint8_t>(i * 13 + 5);
  return payload;
}

template <size_t N>
void fill(IpTcpFields<N>& f) {
  for (size_t i = 0; i < N; ++i) {
    f.src[i] = static_cast<uint8_t>(i + 1);
    f.dst[i] = static_cast<uint8_t>(i + 100);
  }
  f.src_port = 7000;
  f.dst_port = 40000;
  f.seq = 0xFFFFF000;  // wraps within the segment
  f.ack = 77;
  f.flags = TcpSegmentView::ACK | TcpSegmentView::PSH | TcpSegmentView::FIN | TcpSegmentView::CWR;
  f.window = 900;
  f.identification = 0xFFFE;
}

std::vector<uint8_t> big_segment(int version, size_t payload_size, std::vector<uint8_t> options = {}) {
  auto payload = payload_of(payload_size);
  std::vector<uint8_t> packet(40 + 60 + payload_size);
  size_t length = 0;
  if (version == 4) {
    Ipv4TcpFields f;
    fill(f);
    f.options = options;
    length = build_ipv4_tcp(packet, f, payload);
  } else {
    Ipv6TcpFields f;
    fill(f);
    f.options = options;
    length = build_ipv6_tcp(packet, f, payload);
  }
  REQUIRE(length > 0);
  packet.resize(length);
  return packet;
}

TEST_CASE("pieces are valid packets that put the segment back together") {
  for (int version : {4, 6}) {
    for (size_t payload : {size_t{1}, size_t{1400}, size_t{1401}, size_t{10'000}, size_t{14'000}}) {
      CAPTURE(version);
      CAPTURE(payload);
      auto packet = big_segment(version, payload, {2, 4, 0x05, 0x78});
      auto info = check_ip_packet(packet);
      REQUIRE(info);
      auto tcp = parse_tcp_segment(packet, *info);
      REQUIRE(tcp);
      const size_t mss = 1400;
      const size_t pieces = tcp_piece_count(payload, mss);
      CHECK(pieces == (payload + mss - 1) / mss);
      std::vector<uint8_t> joined;
      std::vector<uint8_t> out(1600);
      for (size_t i = 0; i < pieces; ++i) {
        size_t length = cut_tcp_piece(packet, *info, *tcp, mss, i, PieceChecksum::full, out);
        REQUIRE(length > 0);
        std::span<const uint8_t> piece(out.data(), length);
        auto piece_info = check_ip_packet(piece);  // lengths and both checksums
        REQUIRE(piece_info);
        auto piece_tcp = parse_tcp_segment(piece, *piece_info);
        REQUIRE(piece_tcp);
        CHECK(piece_tcp->seq == static_cast<uint32_t>(tcp->seq + joined.size()));
        CHECK(piece_tcp->ack == tcp->ack);
        CHECK(piece_tcp->window == tcp->window);
        CHECK(piece_tcp->payload.size() <= mss);
        CHECK(std::equal(piece_tcp->options.begin(), piece_tcp->options.end(), tcp->options.begin(),
                         tcp->options.end()));
        const bool last = i + 1 == pieces;
        CHECK(piece_tcp->has(TcpSegmentView::FIN) == last);
        CHECK(piece_tcp->has(TcpSegmentView::PSH) == last);
        CHECK(piece_tcp->has(TcpSegmentView::CWR) == (i == 0));
        CHECK(piece_tcp->has(TcpSegmentView::ACK));
        if (version == 4) CHECK(((piece[4] << 8) | piece[5]) == ((0xFFFE + i) & 0xFFFF));
        joined.insert(joined.end(), piece_tcp->payload.begin(), piece_tcp->payload.end());
      }
      CHECK(joined == payload_of(payload));
      CHECK(cut_tcp_piece(packet, *info, *tcp, mss, pieces, PieceChecksum::full, out) == 0);
    }
  }
}

TEST_CASE("offloaded pieces leave the TCP checksum zero for the link; bad arguments write nothing") {
  auto packet = big_segment(4, 5000);
  auto info = check_ip_packet(packet);
  REQUIRE(info);
  auto tcp = parse_tcp_segment(packet, *info);
  REQUIRE(tcp);
  std::vector<uint8_t> out(1600);
  size_t length = cut_tcp_piece(packet, *info, *tcp, 1460, 1, PieceChecksum::offloaded, out);
  REQUIRE(length == 20 + 20 + 1460);
  CHECK(out[20 + 16] == 0);
  CHECK(out[20 + 17] == 0);
  CHECK(internet_checksum(std::span<const uint8_t>(out).first(20)) == 0);  // the IPv4 header's is done
  CHECK(cut_tcp_piece(packet, *info, *tcp, 0, 0, PieceChecksum::full, out) == 0);
  std::vector<uint8_t> small(100);
  CHECK(cut_tcp_piece(packet, *info, *tcp, 1460, 0, PieceChecksum::full, small) == 0);
  CHECK(tcp_piece_count(0, 1460) == 1);
}

}  // namespace
