#include "stack/wire/connection_snapshot.hpp"

#include <string.h>  // explicit_bzero

#include <algorithm>
#include <array>

#include "stack/wire/byte_reader.hpp"
#include "stack/wire/byte_writer.hpp"

namespace roam::wire {
namespace {

constexpr std::array<uint8_t, 4> snapshot_magic = {'R', 'S', 'N', 'P'};
constexpr size_t snapshot_header_size = 12;  // magic, version, flags, body length
constexpr size_t body_length_offset = 8;

// Body bytes besides the addresses and the four parts' contents: ip version, ports,
// connection id, state, send state (41), receive state (17), options (15), part lengths.
constexpr size_t body_fixed_size = 1 + 4 + 8 + 1 + 41 + 17 + 15 + 4 * 4;
// The optional segment-MAC section: direction, connection id, key.
constexpr size_t segment_mac_section_size = 1 + 8 + segment_mac_key_bytes;
constexpr uint16_t flags_known = snapshot_flag_segment_mac | snapshot_flag_owner | snapshot_flag_precopied;
constexpr size_t precopied_section_size = 16;

// Option bits (the options byte); any other bit set is a bad_field.
constexpr uint8_t option_nodelay = 0x01;
constexpr uint8_t option_window_scaling = 0x02;
constexpr uint8_t option_keepalive = 0x04;
constexpr uint8_t option_known = option_nodelay | option_window_scaling | option_keepalive;

// RFC 7323 section 2.3: a shift above 14 is invalid, so no window exceeds 2^30 bytes.
constexpr uint8_t max_window_scale = 14;
constexpr uint32_t max_window = uint32_t{1} << 30;
// Sanity bounds on the send MSS: 65495 is the largest that fits a 65535-byte IPv4 packet
// with minimal headers (65535 - 20 - 20); below 64 no real path works.
constexpr uint16_t min_mss = 64;
constexpr uint16_t max_mss = 65495;

using Reader = ByteReader;

void put_i16(std::vector<uint8_t>& out, int16_t v) {
  put_u16(out, static_cast<uint16_t>(v));
}
void put_part(std::vector<uint8_t>& out, const std::vector<uint8_t>& part) {
  put_u32(out, static_cast<uint32_t>(part.size()));
  put_bytes(out, part);
}

// Reads one u32-length-prefixed part into `part`. The declared length is checked against
// `bound` and then against the bytes left before anything is allocated, so a forged length
// costs nothing.
Result<Ok, SnapshotError> read_part(Reader& reader, size_t bound, std::vector<uint8_t>& part) {
  const uint32_t length = reader.u32();
  if (reader.failed()) return unexpected(SnapshotError::truncated);
  if (length > bound) return unexpected(SnapshotError::oversized);
  const auto bytes = reader.take(length);
  if (reader.failed()) return unexpected(SnapshotError::truncated);
  part.assign(bytes.begin(), bytes.end());
  return Ok{};
}

bool is_ip_version(uint8_t version) {
  return version == 4 || version == 6;
}

bool is_direction(SegmentMacDirection direction) {
  return direction == SegmentMacDirection::client_to_server || direction == SegmentMacDirection::server_to_client;
}

}  // namespace

void wipe_bytes(void* data, size_t size) {
  explicit_bzero(data, size);
}

const char* snapshot_error_name(SnapshotError error) {
  switch (error) {
    case SnapshotError::truncated:
      return "truncated";
    case SnapshotError::bad_magic:
      return "bad_magic";
    case SnapshotError::unknown_version:
      return "unknown_version";
    case SnapshotError::oversized:
      return "oversized";
    case SnapshotError::trailing_bytes:
      return "trailing_bytes";
    case SnapshotError::bad_field:
      return "bad_field";
    case SnapshotError::inconsistent:
      return "inconsistent";
  }
  return "unknown_error";
}

Result<Ok, SnapshotError> validate_snapshot(const ConnectionSnapshot& s) {
  // Fields out of their own range.
  if (!is_ip_version(s.local_address.version) || !is_ip_version(s.remote_address.version)) {
    return unexpected(SnapshotError::bad_field);
  }
  if (s.local_port == 0 || s.remote_port == 0) return unexpected(SnapshotError::bad_field);
  if (s.state != SnapshotTcpState::established && s.state != SnapshotTcpState::close_wait) {
    return unexpected(SnapshotError::bad_field);
  }
  if (s.send.snd_scale > max_window_scale || s.receive.rcv_scale > max_window_scale) {
    return unexpected(SnapshotError::bad_field);
  }
  if (s.send.mss < min_mss || s.send.mss > max_mss) return unexpected(SnapshotError::bad_field);
  if (s.receive.rcv_wnd > max_window || s.receive.rcv_ann_wnd > max_window) {
    return unexpected(SnapshotError::bad_field);
  }
  if (s.send.rto <= 0) return unexpected(SnapshotError::bad_field);
  if (s.segment_mac && (!is_direction(s.segment_mac->outbound) || s.segment_mac->connection_id == 0)) {
    return unexpected(SnapshotError::bad_field);
  }

  // Parts longer than their bounds.
  if (s.unacked.size() > snapshot_max_queue_bytes || s.unsent.size() > snapshot_max_queue_bytes ||
      s.received.size() > snapshot_max_queue_bytes || s.app_state.size() > snapshot_max_app_state_bytes) {
    return unexpected(SnapshotError::oversized);
  }
  if (s.unacked.size() + s.unsent.size() > snapshot_max_queue_bytes) return unexpected(SnapshotError::oversized);

  // Fields that disagree with each other.
  if (s.local_address.version != s.remote_address.version) return unexpected(SnapshotError::inconsistent);
  if (!s.options.window_scaling && (s.send.snd_scale != 0 || s.receive.rcv_scale != 0)) {
    return unexpected(SnapshotError::inconsistent);
  }
  if (s.send.snd_wnd > s.send.snd_wnd_max) return unexpected(SnapshotError::inconsistent);
  // Sequence numbers are modulo 2^32 (RFC 9293 section 3.4): the distance survives wrap-around.
  const uint32_t in_flight = s.send.snd_nxt - s.send.snd_una;
  if (s.precopied) {
    // A delta: the omitted bytes count against the same bounds as the whole would.
    const auto& p = *s.precopied;
    if (p.send_length == 0 && p.receive_length == 0) return unexpected(SnapshotError::bad_field);
    if (p.send_length > snapshot_max_queue_bytes || p.receive_length > snapshot_max_queue_bytes)
      return unexpected(SnapshotError::oversized);
    if (p.send_length + s.unacked.size() + s.unsent.size() > snapshot_max_queue_bytes ||
        p.receive_length + s.received.size() > snapshot_max_queue_bytes)
      return unexpected(SnapshotError::oversized);
    if (p.send_seq != s.send.snd_una) return unexpected(SnapshotError::inconsistent);
    const uint32_t unacked_left = p.send_length >= in_flight ? 0 : in_flight - p.send_length;
    if (s.unacked.size() != unacked_left) return unexpected(SnapshotError::inconsistent);
    // The unread bytes end at rcv_nxt; after a FIN (CLOSE_WAIT) that rule has an
    // exception, so only established connections omit received bytes.
    if (p.receive_length != 0) {
      if (s.state != SnapshotTcpState::established) return unexpected(SnapshotError::inconsistent);
      if (static_cast<uint32_t>(p.receive_seq + p.receive_length + s.received.size()) != s.receive.rcv_nxt)
        return unexpected(SnapshotError::inconsistent);
    } else if (p.receive_seq != 0) {
      return unexpected(SnapshotError::inconsistent);
    }
  } else if (s.unacked.size() != in_flight) {
    return unexpected(SnapshotError::inconsistent);
  }
  // The key was derived for the connection's own id.
  if (s.segment_mac && s.segment_mac->connection_id != s.connection_id) return unexpected(SnapshotError::inconsistent);
  return Ok{};
}

// Encoding an invalid snapshot never reads out of range, but gives bytes decode_snapshot
// may reject (or, for mixed address families, decode to something else): validate first.
void encode_snapshot(const ConnectionSnapshot& s, std::vector<uint8_t>& out) {
  const size_t address_size = s.local_address.size();
  const size_t start = out.size();
  const size_t needed = snapshot_header_size + body_fixed_size + 2 * address_size + s.unacked.size() + s.unsent.size() +
                        s.received.size() + s.app_state.size() + (s.segment_mac ? segment_mac_section_size : 0) +
                        (s.owner ? snapshot_owner_bytes : 0) + (s.precopied ? precopied_section_size : 0);
  // Grow geometrically, so appending many snapshots to one vector stays linear.
  if (out.capacity() - start < needed) out.reserve(std::max(start + needed, 2 * out.capacity()));

  put_bytes(out, snapshot_magic);
  put_u16(out, snapshot_version);
  put_u16(out, static_cast<uint16_t>((s.segment_mac ? snapshot_flag_segment_mac : 0) |
                                     (s.owner ? snapshot_flag_owner : 0) |
                                     (s.precopied ? snapshot_flag_precopied : 0)));
  put_u32(out, 0);  // body length, patched below
  const size_t body_start = out.size();

  put_u8(out, s.local_address.version);
  put_bytes(out, std::span<const uint8_t>(s.local_address.bytes.data(), address_size));
  put_bytes(out, std::span<const uint8_t>(s.remote_address.bytes.data(), address_size));
  put_u16(out, s.local_port);
  put_u16(out, s.remote_port);
  put_u64(out, s.connection_id);
  put_u8(out, static_cast<uint8_t>(s.state));

  put_u32(out, s.send.snd_una);
  put_u32(out, s.send.snd_nxt);
  put_u32(out, s.send.snd_wnd);
  put_u32(out, s.send.snd_wnd_max);
  put_u32(out, s.send.snd_wl1);
  put_u32(out, s.send.snd_wl2);
  put_u32(out, s.send.cwnd);
  put_u32(out, s.send.ssthresh);
  put_u16(out, s.send.mss);
  put_u8(out, s.send.snd_scale);
  put_i16(out, s.send.rtt_sa);
  put_i16(out, s.send.rtt_sv);
  put_i16(out, s.send.rto);

  put_u32(out, s.receive.rcv_nxt);
  put_u32(out, s.receive.rcv_wnd);
  put_u32(out, s.receive.rcv_ann_wnd);
  put_u32(out, s.receive.rcv_ann_right_edge);
  put_u8(out, s.receive.rcv_scale);

  uint8_t bits = 0;
  if (s.options.nodelay) bits |= option_nodelay;
  if (s.options.window_scaling) bits |= option_window_scaling;
  if (s.options.keepalive) bits |= option_keepalive;
  put_u8(out, bits);
  put_u32(out, s.options.keep_idle_ms);
  put_u32(out, s.options.keep_interval_ms);
  put_u32(out, s.options.keep_count);
  put_u8(out, s.options.tos);
  put_u8(out, s.options.ttl);

  put_part(out, s.unacked);
  put_part(out, s.unsent);
  put_part(out, s.received);
  put_part(out, s.app_state);
  if (s.segment_mac) {
    put_u8(out, static_cast<uint8_t>(s.segment_mac->outbound));
    put_u64(out, s.segment_mac->connection_id);
    put_bytes(out, s.segment_mac->key.span());
  }
  if (s.owner) put_bytes(out, *s.owner);
  if (s.precopied) {
    put_u32(out, s.precopied->send_seq);
    put_u32(out, s.precopied->send_length);
    put_u32(out, s.precopied->receive_seq);
    put_u32(out, s.precopied->receive_length);
  }

  const auto body_length = static_cast<uint32_t>(out.size() - body_start);
  for (size_t i = 0; i < 4; ++i) {
    out[start + body_length_offset + i] = static_cast<uint8_t>(body_length >> (24 - 8 * i));
  }
}

std::vector<uint8_t> encode_snapshot(const ConnectionSnapshot& snapshot) {
  std::vector<uint8_t> out;
  encode_snapshot(snapshot, out);
  return out;
}

Result<ConnectionSnapshot, SnapshotError> decode_snapshot(std::span<const uint8_t> bytes) {
  // Header. Any prefix of the header is reported as truncated, even of the magic.
  if (bytes.size() < snapshot_header_size) return unexpected(SnapshotError::truncated);
  Reader header(bytes.first(snapshot_header_size));
  const auto magic = header.take(snapshot_magic.size());
  if (!std::equal(magic.begin(), magic.end(), snapshot_magic.begin(), snapshot_magic.end())) {
    return unexpected(SnapshotError::bad_magic);
  }
  if (header.u16() != snapshot_version) return unexpected(SnapshotError::unknown_version);
  const uint16_t flags = header.u16();
  if ((flags & ~flags_known) != 0) return unexpected(SnapshotError::bad_field);
  const uint32_t body_length = header.u32();
  const size_t rest = bytes.size() - snapshot_header_size;
  if (body_length > rest) return unexpected(SnapshotError::truncated);
  if (body_length < rest) return unexpected(SnapshotError::trailing_bytes);

  Reader r(bytes.subspan(snapshot_header_size));
  ConnectionSnapshot s;

  const uint8_t ip_version = r.u8();
  if (r.failed()) return unexpected(SnapshotError::truncated);
  if (!is_ip_version(ip_version)) return unexpected(SnapshotError::bad_field);
  s.local_address.version = ip_version;
  s.remote_address.version = ip_version;
  const auto local = r.take(s.local_address.size());
  std::copy(local.begin(), local.end(), s.local_address.bytes.begin());
  const auto remote = r.take(s.remote_address.size());
  std::copy(remote.begin(), remote.end(), s.remote_address.bytes.begin());
  s.local_port = r.u16();
  s.remote_port = r.u16();
  s.connection_id = r.u64();
  // The underlying type is uint8_t, so any byte is a representable value; validation
  // rejects the ones that are not a state.
  s.state = static_cast<SnapshotTcpState>(r.u8());

  s.send.snd_una = r.u32();
  s.send.snd_nxt = r.u32();
  s.send.snd_wnd = r.u32();
  s.send.snd_wnd_max = r.u32();
  s.send.snd_wl1 = r.u32();
  s.send.snd_wl2 = r.u32();
  s.send.cwnd = r.u32();
  s.send.ssthresh = r.u32();
  s.send.mss = r.u16();
  s.send.snd_scale = r.u8();
  s.send.rtt_sa = r.i16();
  s.send.rtt_sv = r.i16();
  s.send.rto = r.i16();

  s.receive.rcv_nxt = r.u32();
  s.receive.rcv_wnd = r.u32();
  s.receive.rcv_ann_wnd = r.u32();
  s.receive.rcv_ann_right_edge = r.u32();
  s.receive.rcv_scale = r.u8();

  const uint8_t bits = r.u8();
  s.options.nodelay = (bits & option_nodelay) != 0;
  s.options.window_scaling = (bits & option_window_scaling) != 0;
  s.options.keepalive = (bits & option_keepalive) != 0;
  s.options.keep_idle_ms = r.u32();
  s.options.keep_interval_ms = r.u32();
  s.options.keep_count = r.u32();
  s.options.tos = r.u8();
  s.options.ttl = r.u8();
  if (r.failed()) return unexpected(SnapshotError::truncated);
  if ((bits & ~option_known) != 0) return unexpected(SnapshotError::bad_field);

  // Each part's length is bounded before its bytes are copied; unsent is also bounded by
  // what unacked left of the shared queue limit.
  if (auto ok = read_part(r, snapshot_max_queue_bytes, s.unacked); !ok) return unexpected(ok.error());
  if (auto ok = read_part(r, snapshot_max_queue_bytes - s.unacked.size(), s.unsent); !ok) {
    return unexpected(ok.error());
  }
  if (auto ok = read_part(r, snapshot_max_queue_bytes, s.received); !ok) return unexpected(ok.error());
  if (auto ok = read_part(r, snapshot_max_app_state_bytes, s.app_state); !ok) return unexpected(ok.error());
  if ((flags & snapshot_flag_segment_mac) != 0) {
    SegmentMacState mac;
    // Any byte is representable in the enum's underlying type; validation rejects the rest.
    mac.outbound = static_cast<SegmentMacDirection>(r.u8());
    mac.connection_id = r.u64();
    const auto key = r.take(segment_mac_key_bytes);
    if (r.failed()) return unexpected(SnapshotError::truncated);
    std::copy(key.begin(), key.end(), mac.key.data());
    s.segment_mac = mac;
  }
  if ((flags & snapshot_flag_owner) != 0) {
    const auto owner = r.take(snapshot_owner_bytes);
    if (r.failed()) return unexpected(SnapshotError::truncated);
    s.owner.emplace();
    std::copy(owner.begin(), owner.end(), s.owner->begin());
  }
  if ((flags & snapshot_flag_precopied) != 0) {
    SnapshotPrecopied p;
    p.send_seq = r.u32();
    p.send_length = r.u32();
    p.receive_seq = r.u32();
    p.receive_length = r.u32();
    if (r.failed()) return unexpected(SnapshotError::truncated);
    s.precopied = p;
  }
  // The body length matched the input, but the parts ended before it.
  if (r.remaining() != 0) return unexpected(SnapshotError::trailing_bytes);

  if (auto ok = validate_snapshot(s); !ok) return unexpected(ok.error());
  return s;
}

}  // namespace roam::wire
