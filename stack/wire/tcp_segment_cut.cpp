#include "stack/wire/tcp_segment_cut.hpp"

#include <algorithm>
#include <cstring>

#include "stack/wire/checksum.hpp"

namespace roam::wire {

namespace {

void store_be16(uint8_t* p, size_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

}  // namespace

size_t tcp_piece_count(size_t payload_size, size_t mss) {
  if (mss == 0 || payload_size == 0) return 1;
  return (payload_size + mss - 1) / mss;
}

size_t cut_tcp_piece(std::span<const uint8_t> packet, const PacketInfo& info, const TcpSegmentView& tcp, size_t mss,
                     size_t index, PieceChecksum checksum, std::span<uint8_t> out) {
  const size_t pieces = tcp_piece_count(tcp.payload.size(), mss);
  if (mss == 0 || index >= pieces) return 0;
  const size_t tcp_at = info.transport_offset;
  const size_t headers = tcp_at + tcp.header_length;
  const size_t offset = index * mss;
  const size_t size = std::min(mss, tcp.payload.size() - std::min(offset, tcp.payload.size()));
  const size_t length = headers + size;
  if (out.size() < length || packet.size() < headers) return 0;
  std::memcpy(out.data(), packet.data(), headers);
  if (size > 0) std::memcpy(out.data() + headers, tcp.payload.data() + offset, size);

  uint8_t* ip = out.data();
  if (info.version == 4) {
    store_be16(ip + 2, length);
    const auto id = static_cast<uint16_t>(((ip[4] << 8) | ip[5]) + index);
    store_be16(ip + 4, id);
    ip[10] = ip[11] = 0;
    store_be16(ip + 10, internet_checksum(std::span<const uint8_t>(ip, tcp_at)));
  } else {
    store_be16(ip + 4, length - tcp_at);
  }
  uint8_t* t = out.data() + tcp_at;
  const auto seq = static_cast<uint32_t>(tcp.seq + offset);
  t[4] = static_cast<uint8_t>(seq >> 24);
  t[5] = static_cast<uint8_t>(seq >> 16);
  t[6] = static_cast<uint8_t>(seq >> 8);
  t[7] = static_cast<uint8_t>(seq);
  if (index + 1 < pieces) t[13] &= static_cast<uint8_t>(~(TcpSegmentView::FIN | TcpSegmentView::PSH));
  if (index > 0) t[13] &= static_cast<uint8_t>(~TcpSegmentView::CWR);
  t[16] = t[17] = 0;
  if (checksum == PieceChecksum::full) {
    const size_t tcp_length = length - tcp_at;
    uint32_t sum = info.version == 4
                       ? pseudo_header_sum_v4(std::span<const uint8_t, 4>(ip + 12, 4),
                                              std::span<const uint8_t, 4>(ip + 16, 4), ip_protocol_tcp,
                                              static_cast<uint16_t>(tcp_length))
                       : pseudo_header_sum_v6(std::span<const uint8_t, 16>(ip + 8, 16),
                                              std::span<const uint8_t, 16>(ip + 24, 16), ip_protocol_tcp,
                                              static_cast<uint32_t>(tcp_length));
    store_be16(t + 16, checksum_fold(checksum_add(sum, std::span<const uint8_t>(t, tcp_length))));
  }
  return length;
}

}  // namespace roam::wire
