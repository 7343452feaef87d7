// Cutting one multi-MSS TCP segment into MSS-sized packets in userspace, as the kernel's
// TCP segmentation offload would (Linux tcp_gso_segment): used where each piece must be
// changed on its own before it leaves (the segment MAC signs every piece; the kernel
// would copy one super-segment's options, and so one MAC, onto every piece). Pure
// functions over byte spans; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "stack/wire/ip_packet.hpp"
#include "stack/wire/tcp_header.hpp"

namespace roam::wire {

// Who completes the TCP checksum of a piece: this function (every byte summed), or the
// link's checksum offload (the field is left zero, as lwIP leaves it on such a link).
enum class PieceChecksum : uint8_t { full, offloaded };

// Number of pieces `payload_size` bytes make at `mss` bytes each (at least 1).
size_t tcp_piece_count(size_t payload_size, size_t mss);

// Writes piece `index` of `packet` (a TCP segment this host built; `info`, `tcp` describe
// it) to `out`: the same IP and TCP headers with payload bytes [index*mss, +mss), its
// sequence number advanced by that offset, FIN and PSH only on the last piece, CWR only
// on the first, the IPv4 identification advanced by `index`, lengths and the IPv4 header
// checksum brought up to date. Returns the piece's length, or 0 when `mss` is 0, `index`
// is past the last piece, or `out` is too small.
size_t cut_tcp_piece(std::span<const uint8_t> packet, const PacketInfo& info, const TcpSegmentView& tcp, size_t mss,
                     size_t index, PieceChecksum checksum, std::span<uint8_t> out);

}  // namespace roam::wire
