// Tests for stack/wire/connection_snapshot: round trips, a known-bytes vector, every truncation,
// forged lengths and each validation rule; the optional segment-MAC section (flag 0x0001):
// known bytes, truncation, unknown flags, its own field rules, and that snapshots without
// it are the version-1 bytes they always were.
#include "stack/wire/connection_snapshot.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace {

using roam::wire::ConnectionSnapshot;
using roam::wire::SegmentMacDirection;
using roam::wire::SegmentMacState;
using roam::wire::decode_snapshot;
using roam::wire::encode_snapshot;
using roam::IpAddress;
using roam::wire::snapshot_error_name;
using roam::wire::snapshot_max_app_state_bytes;
using roam::wire::snapshot_max_queue_bytes;
using roam::wire::SnapshotError;
using roam::wire::SnapshotTcpState;
using roam::wire::validate_snapshot;
using Bytes = std::vector<uint8_t>;

Bytes from_hex(std::string_view hex) {
  Bytes out;
  auto nibble = [](char c) { return static_cast<uint8_t>(c <= '9' ? c - '0' : c - 'a' + 10); };
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<uint8_t>((nibble(hex[i]) << 4) | nibble(hex[i + 1])));
  }
  return out;
}

IpAddress address(std::string_view text) {
  const auto a = IpAddress::parse(text);
  REQUIRE(a.has_value());
  return *a;
}

Bytes pattern(size_t n, uint8_t seed) {
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>(seed + i * 7);
  return out;
}

// A valid established IPv4 connection with every queue and the app state non-empty.
ConnectionSnapshot ipv4_snapshot() {
  ConnectionSnapshot s;
  s.local_address = address("10.9.0.1");
  s.remote_address = address("10.9.0.2");
  s.local_port = 8080;
  s.remote_port = 49684;
  s.connection_id = 0x1122334455667788u;
  s.state = SnapshotTcpState::established;
  s.send.snd_una = 0x35bd3c33u;
  s.send.snd_nxt = 0x35bd3c33u + 300;
  s.send.snd_wnd = 64000;
  s.send.snd_wnd_max = 65535 << 7;
  s.send.snd_wl1 = 0x9000;
  s.send.snd_wl2 = 0x35bd3c33u;
  s.send.cwnd = 14600;
  s.send.ssthresh = 0xffffffffu;
  s.send.mss = 1460;
  s.send.snd_scale = 7;
  s.send.rtt_sa = 24;
  s.send.rtt_sv = -3;
  s.send.rto = 6;
  s.receive.rcv_nxt = 0x9001;
  s.receive.rcv_wnd = 4u << 20;
  s.receive.rcv_ann_wnd = 4u << 20;
  s.receive.rcv_ann_right_edge = 0x9001 + (4u << 20);
  s.receive.rcv_scale = 7;
  s.options.nodelay = true;
  s.options.window_scaling = true;
  s.options.keepalive = true;
  s.options.keep_idle_ms = 7200000;
  s.options.keep_interval_ms = 75000;
  s.options.keep_count = 9;
  s.options.tos = 0x10;
  s.options.ttl = 64;
  s.unacked = pattern(300, 1);
  s.unsent = pattern(1000, 2);
  s.received = pattern(77, 3);
  s.app_state = pattern(12, 4);
  return s;
}

// The same over IPv6, in close_wait, without window scaling or keepalive.
ConnectionSnapshot ipv6_snapshot() {
  ConnectionSnapshot s = ipv4_snapshot();
  s.local_address = address("fd00:9::1");
  s.remote_address = address("2001:db8::2:1");
  s.local_port = 443;
  s.remote_port = 52492;
  s.connection_id = 0;
  s.state = SnapshotTcpState::close_wait;
  s.send.snd_wnd = 65535;
  s.send.snd_wnd_max = 65535;
  s.send.snd_scale = 0;
  s.send.mss = 1440;
  s.receive.rcv_wnd = 65535;
  s.receive.rcv_ann_wnd = 65000;
  s.receive.rcv_scale = 0;
  s.options.window_scaling = false;
  s.options.keepalive = false;
  s.options.nodelay = false;
  s.options.ttl = 255;
  s.unsent = pattern(5000, 5);
  s.app_state = pattern(1, 6);
  return s;
}

void check_same(const ConnectionSnapshot& a, const ConnectionSnapshot& b) {
  CHECK(a.local_address == b.local_address);
  CHECK(a.remote_address == b.remote_address);
  CHECK(a.local_port == b.local_port);
  CHECK(a.remote_port == b.remote_port);
  CHECK(a.connection_id == b.connection_id);
  CHECK(a.state == b.state);
  CHECK(a.send.snd_una == b.send.snd_una);
  CHECK(a.send.snd_nxt == b.send.snd_nxt);
  CHECK(a.send.snd_wnd == b.send.snd_wnd);
  CHECK(a.send.snd_wnd_max == b.send.snd_wnd_max);
  CHECK(a.send.snd_wl1 == b.send.snd_wl1);
  CHECK(a.send.snd_wl2 == b.send.snd_wl2);
  CHECK(a.send.cwnd == b.send.cwnd);
  CHECK(a.send.ssthresh == b.send.ssthresh);
  CHECK(a.send.mss == b.send.mss);
  CHECK(a.send.snd_scale == b.send.snd_scale);
  CHECK(a.send.rtt_sa == b.send.rtt_sa);
  CHECK(a.send.rtt_sv == b.send.rtt_sv);
  CHECK(a.send.rto == b.send.rto);
  CHECK(a.receive.rcv_nxt == b.receive.rcv_nxt);
  CHECK(a.receive.rcv_wnd == b.receive.rcv_wnd);
  CHECK(a.receive.rcv_ann_wnd == b.receive.rcv_ann_wnd);
  CHECK(a.receive.rcv_ann_right_edge == b.receive.rcv_ann_right_edge);
  CHECK(a.receive.rcv_scale == b.receive.rcv_scale);
  CHECK(a.options.nodelay == b.options.nodelay);
  CHECK(a.options.window_scaling == b.options.window_scaling);
  CHECK(a.options.keepalive == b.options.keepalive);
  CHECK(a.options.keep_idle_ms == b.options.keep_idle_ms);
  CHECK(a.options.keep_interval_ms == b.options.keep_interval_ms);
  CHECK(a.options.keep_count == b.options.keep_count);
  CHECK(a.options.tos == b.options.tos);
  CHECK(a.options.ttl == b.options.ttl);
  CHECK(a.unacked == b.unacked);
  CHECK(a.unsent == b.unsent);
  CHECK(a.received == b.received);
  CHECK(a.app_state == b.app_state);
  CHECK(a.segment_mac.has_value() == b.segment_mac.has_value());
  if (a.segment_mac && b.segment_mac) CHECK(*a.segment_mac == *b.segment_mac);
  CHECK(a.owner == b.owner);
}

SegmentMacState mac_state(uint64_t id) {
  SegmentMacState m;
  m.connection_id = id;
  m.outbound = SegmentMacDirection::server_to_client;
  for (size_t i = 0; i < m.key.size(); ++i) m.key.data()[i] = static_cast<uint8_t>(0xa0 + i);
  return m;
}

void check_round_trip(const ConnectionSnapshot& original) {
  REQUIRE(validate_snapshot(original).has_value());
  const Bytes bytes = encode_snapshot(original);
  const auto decoded = decode_snapshot(bytes);
  REQUIRE(decoded.has_value());
  check_same(*decoded, original);
  CHECK(encode_snapshot(*decoded) == bytes);
}

SnapshotError decode_error(const Bytes& bytes) {
  const auto r = decode_snapshot(bytes);
  REQUIRE_FALSE(r.has_value());
  return r.error();
}

SnapshotError validate_error(const ConnectionSnapshot& s) {
  const auto r = validate_snapshot(s);
  REQUIRE_FALSE(r.has_value());
  return r.error();
}

void store_be32(Bytes& bytes, size_t offset, uint32_t v) {
  for (size_t i = 0; i < 4; ++i) bytes[offset + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

// Offsets in an IPv4 encoding: 12-byte header, then the body (see the header's layout).
constexpr size_t body_length_offset = 8;
constexpr size_t ipv4_state_offset = 12 + 1 + 4 + 4 + 2 + 2 + 8;
constexpr size_t ipv4_snd_scale_offset = ipv4_state_offset + 1 + 8 * 4 + 2;
constexpr size_t ipv4_options_offset = ipv4_snd_scale_offset + 1 + 3 * 2 + 4 * 4 + 1;
constexpr size_t ipv4_unacked_length_offset = ipv4_options_offset + 1 + 3 * 4 + 2;

// A small IPv4 snapshot written out by hand from the layout in connection_snapshot.hpp.
constexpr std::string_view small_ipv4_hex =
    "52534e50"          // magic "RSNP"
    "0001"              // version 1
    "0000"              // flags
    "00000075"          // body length 117
    "04"                // ip version
    "0a090001"          // local 10.9.0.1
    "0a090002"          // remote 10.9.0.2
    "1f90"              // local port 8080
    "c214"              // remote port 49684
    "0102030405060708"  // connection id
    "01"                // established
    "00001000"          // snd_una
    "00001002"          // snd_nxt
    "0000fa00"          // snd_wnd 64000
    "0000ffff"          // snd_wnd_max
    "00002000"          // snd_wl1
    "00001000"          // snd_wl2
    "00004000"          // cwnd
    "ffffffff"          // ssthresh
    "05b4"              // mss 1460
    "07"                // snd_scale
    "0010"              // rtt_sa 16
    "fffe"              // rtt_sv -2
    "0006"              // rto
    "00002001"          // rcv_nxt
    "00008000"          // rcv_wnd
    "00008000"          // rcv_ann_wnd
    "0000a001"          // rcv_ann_right_edge
    "07"                // rcv_scale
    "03"                // options: nodelay, window_scaling
    "00001c20"          // keep_idle_ms 7200
    "0000004b"          // keep_interval_ms 75
    "00000009"          // keep_count
    "10"                // tos
    "40"                // ttl 64
    "00000002"
    "6869"  // unacked "hi"
    "00000001"
    "21"        // unsent "!"
    "00000000"  // received: none
    "00000003"
    "010203";  // app state

}  // namespace

TEST_CASE("an IPv4 snapshot with queues and app state round-trips field by field and byte for byte") {
  check_round_trip(ipv4_snapshot());
}

TEST_CASE("an IPv6 snapshot with queues and app state round-trips field by field and byte for byte") {
  check_round_trip(ipv6_snapshot());
}

TEST_CASE("a snapshot with every part empty round-trips") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.send.snd_nxt = s.send.snd_una;
  s.unacked.clear();
  s.unsent.clear();
  s.received.clear();
  s.app_state.clear();
  check_round_trip(s);
  CHECK(encode_snapshot(s).size() == 12 + 111);
  s.local_address = address("::1");
  s.remote_address = address("::2");
  CHECK(encode_snapshot(s).size() == 12 + 135);
}

TEST_CASE("known bytes of a small IPv4 snapshot decode to the expected fields and re-encode identically") {
  const Bytes bytes = from_hex(small_ipv4_hex);
  REQUIRE(bytes.size() == 12 + 117);
  const auto r = decode_snapshot(bytes);
  REQUIRE(r.has_value());
  const ConnectionSnapshot& s = *r;
  CHECK(s.local_address == address("10.9.0.1"));
  CHECK(s.remote_address == address("10.9.0.2"));
  CHECK(s.local_port == 8080);
  CHECK(s.remote_port == 49684);
  CHECK(s.connection_id == 0x0102030405060708u);
  CHECK(s.state == SnapshotTcpState::established);
  CHECK(s.send.snd_una == 0x1000);
  CHECK(s.send.snd_nxt == 0x1002);
  CHECK(s.send.snd_wnd == 64000);
  CHECK(s.send.snd_wnd_max == 0xffff);
  CHECK(s.send.snd_wl1 == 0x2000);
  CHECK(s.send.snd_wl2 == 0x1000);
  CHECK(s.send.cwnd == 0x4000);
  CHECK(s.send.ssthresh == 0xffffffffu);
  CHECK(s.send.mss == 1460);
  CHECK(s.send.snd_scale == 7);
  CHECK(s.send.rtt_sa == 16);
  CHECK(s.send.rtt_sv == -2);
  CHECK(s.send.rto == 6);
  CHECK(s.receive.rcv_nxt == 0x2001);
  CHECK(s.receive.rcv_wnd == 0x8000);
  CHECK(s.receive.rcv_ann_wnd == 0x8000);
  CHECK(s.receive.rcv_ann_right_edge == 0xa001);
  CHECK(s.receive.rcv_scale == 7);
  CHECK(s.options.nodelay);
  CHECK(s.options.window_scaling);
  CHECK_FALSE(s.options.keepalive);
  CHECK(s.options.keep_idle_ms == 7200);
  CHECK(s.options.keep_interval_ms == 75);
  CHECK(s.options.keep_count == 9);
  CHECK(s.options.tos == 0x10);
  CHECK(s.options.ttl == 64);
  CHECK(s.unacked == Bytes{'h', 'i'});
  CHECK(s.unsent == Bytes{'!'});
  CHECK(s.received.empty());
  CHECK(s.app_state == Bytes{1, 2, 3});
  CHECK(encode_snapshot(s) == bytes);
}

TEST_CASE("encode appends after bytes already in the output") {
  const ConnectionSnapshot s = ipv6_snapshot();
  Bytes out = {0xaa, 0xbb};
  encode_snapshot(s, out);
  const Bytes alone = encode_snapshot(s);
  REQUIRE(out.size() == 2 + alone.size());
  CHECK(out[0] == 0xaa);
  CHECK(out[1] == 0xbb);
  CHECK(Bytes(out.begin() + 2, out.end()) == alone);
}

TEST_CASE("every truncation of a valid snapshot is rejected as truncated") {
  for (const ConnectionSnapshot& s : {ipv4_snapshot(), ipv6_snapshot()}) {
    const Bytes bytes = encode_snapshot(s);
    for (size_t n = 0; n < bytes.size(); ++n) {
      CAPTURE(n);
      const auto r = decode_snapshot(std::span<const uint8_t>(bytes.data(), n));
      REQUIRE_FALSE(r.has_value());
      CHECK(r.error() == SnapshotError::truncated);
    }
  }
}

TEST_CASE("a body cut short with its length patched to match is rejected as truncated") {
  // The header agrees with the input, so the cut is found inside the body, at every point.
  const Bytes bytes = from_hex(small_ipv4_hex);
  for (size_t n = 12; n < bytes.size(); ++n) {
    CAPTURE(n);
    Bytes cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    store_be32(cut, body_length_offset, static_cast<uint32_t>(n - 12));
    CHECK(decode_error(cut) == SnapshotError::truncated);
  }
}

TEST_CASE("one byte after the snapshot is rejected as trailing bytes") {
  Bytes bytes = encode_snapshot(ipv4_snapshot());
  bytes.push_back(0);
  CHECK(decode_error(bytes) == SnapshotError::trailing_bytes);
}

TEST_CASE("a body length longer than the body's parts is rejected as trailing bytes") {
  Bytes bytes = from_hex(small_ipv4_hex);
  bytes.push_back(0);
  store_be32(bytes, body_length_offset, 118);
  CHECK(decode_error(bytes) == SnapshotError::trailing_bytes);
}

TEST_CASE("a wrong magic is rejected as bad magic") {
  Bytes bytes = from_hex(small_ipv4_hex);
  bytes[3] = 'Q';
  CHECK(decode_error(bytes) == SnapshotError::bad_magic);
}

TEST_CASE("version 2 and version 0 are rejected as unknown versions") {
  Bytes bytes = from_hex(small_ipv4_hex);
  bytes[5] = 2;
  CHECK(decode_error(bytes) == SnapshotError::unknown_version);
  bytes[5] = 0;
  CHECK(decode_error(bytes) == SnapshotError::unknown_version);
}

TEST_CASE("unknown flag bits are rejected as a bad field") {
  for (uint8_t high : {uint8_t{0x00}, uint8_t{0x80}}) {
    for (uint8_t low : {uint8_t{0x08}, uint8_t{0x09}, uint8_t{0x80}}) {
      Bytes bytes = from_hex(small_ipv4_hex);
      bytes[6] = high;
      bytes[7] = low;
      CAPTURE(int{low});
      CHECK(decode_error(bytes) == SnapshotError::bad_field);
    }
  }
}

TEST_CASE("the segment-MAC flag without its section is rejected as truncated") {
  Bytes bytes = from_hex(small_ipv4_hex);
  bytes[7] = 1;
  CHECK(decode_error(bytes) == SnapshotError::truncated);
}

TEST_CASE("a snapshot with a segment-MAC section round-trips, IPv4 and IPv6") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.segment_mac = mac_state(s.connection_id);
  check_round_trip(s);
  const Bytes with = encode_snapshot(s);
  s.segment_mac.reset();
  CHECK(with.size() == encode_snapshot(s).size() + 25);  // direction, id, 16 key bytes

  ConnectionSnapshot v6 = ipv6_snapshot();
  v6.connection_id = 77;
  v6.segment_mac = mac_state(77);
  v6.segment_mac->outbound = SegmentMacDirection::client_to_server;
  check_round_trip(v6);
}

// small_ipv4_hex with flag 0x0001 and the section appended (body 117 + 25 = 142 bytes).
Bytes small_ipv4_with_mac() {
  Bytes bytes = from_hex(small_ipv4_hex);
  bytes[7] = 0x01;
  store_be32(bytes, body_length_offset, 117 + 25);
  const Bytes section = from_hex(
      "01"                                  // direction: server -> client
      "0102030405060708"                    // connection id (the body's)
      "000102030405060708090a0b0c0d0e0f");  // key
  bytes.insert(bytes.end(), section.begin(), section.end());
  return bytes;
}

TEST_CASE("known bytes of a snapshot with a segment-MAC section decode and re-encode identically") {
  const Bytes bytes = small_ipv4_with_mac();
  const auto r = decode_snapshot(bytes);
  REQUIRE(r.has_value());
  REQUIRE(r->segment_mac.has_value());
  CHECK(r->segment_mac->connection_id == 0x0102030405060708u);
  CHECK(r->segment_mac->outbound == SegmentMacDirection::server_to_client);
  for (size_t i = 0; i < 16; ++i) CHECK(r->segment_mac->key.data()[i] == i);
  CHECK(r->app_state == Bytes{1, 2, 3});
  CHECK(encode_snapshot(*r) == bytes);
  // Without the section: the plain version-1 bytes, flags 0.
  ConnectionSnapshot plain = *r;
  plain.segment_mac.reset();
  CHECK(encode_snapshot(plain) == from_hex(small_ipv4_hex));
}

TEST_CASE("every truncation of a snapshot with a segment-MAC section is rejected as truncated") {
  const Bytes bytes = small_ipv4_with_mac();
  for (size_t n = 0; n < bytes.size(); ++n) {
    CAPTURE(n);
    CHECK(decode_error(Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n))) ==
          SnapshotError::truncated);
    if (n >= 12) {  // the header agrees with the cut: found inside the body or the section
      Bytes cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
      store_be32(cut, body_length_offset, static_cast<uint32_t>(n - 12));
      CHECK(decode_error(cut) == SnapshotError::truncated);
    }
  }
  Bytes longer = bytes;
  longer.push_back(0);
  CHECK(decode_error(longer) == SnapshotError::trailing_bytes);
  store_be32(longer, body_length_offset, 117 + 26);
  CHECK(decode_error(longer) == SnapshotError::trailing_bytes);
}

TEST_CASE("a segment-MAC section with a bad direction, id 0 or another id than the body's is refused") {
  Bytes bytes = small_ipv4_with_mac();
  const size_t section = 12 + 117;
  bytes[section] = 2;  // no such direction
  CHECK(decode_error(bytes) == SnapshotError::bad_field);
  bytes[section] = 0;
  REQUIRE(decode_snapshot(bytes).has_value());
  bytes[section + 8] ^= 0x01;  // the id's last byte: another connection's key
  CHECK(decode_error(bytes) == SnapshotError::inconsistent);

  ConnectionSnapshot s = ipv4_snapshot();
  s.connection_id = 0;
  s.segment_mac = mac_state(0);
  CHECK(validate_error(s) == SnapshotError::bad_field);
}

TEST_CASE("wipe() zeroes a state's key (every copy does it as it is destroyed)") {
  SegmentMacState m = mac_state(5);
  m.key.wipe();
  for (size_t i = 0; i < m.key.size(); ++i) CHECK(m.key.data()[i] == 0);
}

TEST_CASE("a declared queue length above its bound is rejected as oversized before reading the bytes") {
  // The input holds none of the declared bytes: a decoder that allocated or read first would
  // report truncated (or run out of memory) instead.
  const Bytes valid = from_hex(small_ipv4_hex);
  for (uint32_t length : {uint32_t{0xffffffff}, static_cast<uint32_t>(snapshot_max_queue_bytes + 1)}) {
    CAPTURE(length);
    Bytes bytes = valid;
    store_be32(bytes, ipv4_unacked_length_offset, length);
    CHECK(decode_error(bytes) == SnapshotError::oversized);
  }
  // unsent, received and app state: the parts follow unacked's 2 bytes, unsent's 1, received's 0.
  Bytes unsent = valid;
  store_be32(unsent, ipv4_unacked_length_offset + 4 + 2, 0xffffffff);
  CHECK(decode_error(unsent) == SnapshotError::oversized);
  Bytes received = valid;
  store_be32(received, ipv4_unacked_length_offset + 4 + 2 + 4 + 1, 0xffffffff);
  CHECK(decode_error(received) == SnapshotError::oversized);
  Bytes app_state = valid;
  store_be32(app_state, ipv4_unacked_length_offset + 4 + 2 + 4 + 1 + 4,
             static_cast<uint32_t>(snapshot_max_app_state_bytes + 1));
  CHECK(decode_error(app_state) == SnapshotError::oversized);
}

TEST_CASE("a declared length within its bound but past the input is rejected as truncated") {
  Bytes bytes = from_hex(small_ipv4_hex);
  store_be32(bytes, ipv4_unacked_length_offset, 1000);
  CHECK(decode_error(bytes) == SnapshotError::truncated);
}

TEST_CASE("parts above their bounds fail validation as oversized") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.app_state.assign(snapshot_max_app_state_bytes + 1, 0);
  CHECK(validate_error(s) == SnapshotError::oversized);
  s.app_state.assign(snapshot_max_app_state_bytes, 0);
  CHECK(validate_snapshot(s).has_value());

  // unacked and unsent share one bound: each fits alone, together they do not.
  s = ipv4_snapshot();
  s.unsent.assign(snapshot_max_queue_bytes - s.unacked.size() + 1, 0);
  CHECK(validate_error(s) == SnapshotError::oversized);
}

TEST_CASE("an unacked length other than snd_nxt - snd_una is inconsistent") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.unacked.pop_back();
  CHECK(validate_error(s) == SnapshotError::inconsistent);
  CHECK(decode_error(encode_snapshot(s)) == SnapshotError::inconsistent);
  s.unacked.push_back(1);
  s.unacked.push_back(2);
  CHECK(validate_error(s) == SnapshotError::inconsistent);
}

TEST_CASE("the unacked length is measured modulo 2^32 across sequence wrap-around") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.send.snd_una = 0xfffffff0u;
  s.send.snd_nxt = 0x10;
  s.unacked = pattern(32, 9);
  CHECK(validate_snapshot(s).has_value());
  check_round_trip(s);
  s.unacked.pop_back();
  CHECK(validate_error(s) == SnapshotError::inconsistent);
}

TEST_CASE("mixed address families are inconsistent") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.remote_address = address("2001:db8::1");
  CHECK(validate_error(s) == SnapshotError::inconsistent);
  s = ipv6_snapshot();
  s.local_address = address("10.0.0.1");
  CHECK(validate_error(s) == SnapshotError::inconsistent);
}

TEST_CASE("an ip version other than 4 or 6 is a bad field") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.local_address.version = 5;
  CHECK(validate_error(s) == SnapshotError::bad_field);
  Bytes bytes = from_hex(small_ipv4_hex);
  bytes[12] = 5;
  CHECK(decode_error(bytes) == SnapshotError::bad_field);
}

TEST_CASE("port 0 is a bad field") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.local_port = 0;
  CHECK(validate_error(s) == SnapshotError::bad_field);
  CHECK(decode_error(encode_snapshot(s)) == SnapshotError::bad_field);
  s = ipv4_snapshot();
  s.remote_port = 0;
  CHECK(validate_error(s) == SnapshotError::bad_field);
  CHECK(decode_error(encode_snapshot(s)) == SnapshotError::bad_field);
}

TEST_CASE("a window scale of 15 is a bad field and 14 is accepted") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.send.snd_scale = 14;
  s.receive.rcv_scale = 14;
  CHECK(validate_snapshot(s).has_value());
  s.send.snd_scale = 15;
  CHECK(validate_error(s) == SnapshotError::bad_field);
  CHECK(decode_error(encode_snapshot(s)) == SnapshotError::bad_field);
  s.send.snd_scale = 14;
  s.receive.rcv_scale = 15;
  CHECK(validate_error(s) == SnapshotError::bad_field);
  Bytes bytes = from_hex(small_ipv4_hex);
  bytes[ipv4_snd_scale_offset] = 15;
  CHECK(decode_error(bytes) == SnapshotError::bad_field);
}

TEST_CASE("a state other than established or close_wait is a bad field") {
  Bytes bytes = from_hex(small_ipv4_hex);
  REQUIRE(bytes[ipv4_state_offset] == 1);
  for (uint8_t state : std::initializer_list<uint8_t>{0, 3, 255}) {
    CAPTURE(state);
    bytes[ipv4_state_offset] = state;
    CHECK(decode_error(bytes) == SnapshotError::bad_field);
  }
  bytes[ipv4_state_offset] = 2;
  CHECK(decode_snapshot(bytes).has_value());
}

TEST_CASE("an unknown option bit is a bad field") {
  Bytes bytes = from_hex(small_ipv4_hex);
  REQUIRE(bytes[ipv4_options_offset] == 0x03);
  bytes[ipv4_options_offset] = 0x0b;
  CHECK(decode_error(bytes) == SnapshotError::bad_field);
}

TEST_CASE("window scales without window scaling are inconsistent") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.options.window_scaling = false;
  CHECK(validate_error(s) == SnapshotError::inconsistent);
  s.send.snd_scale = 0;
  CHECK(validate_error(s) == SnapshotError::inconsistent);
  s.receive.rcv_scale = 0;
  CHECK(validate_snapshot(s).has_value());
}

TEST_CASE("an mss outside 64..65495 is a bad field") {
  ConnectionSnapshot s = ipv4_snapshot();
  for (uint16_t mss : std::initializer_list<uint16_t>{0, 63, 65496, 65535}) {
    CAPTURE(mss);
    s.send.mss = mss;
    CHECK(validate_error(s) == SnapshotError::bad_field);
  }
  for (uint16_t mss : std::initializer_list<uint16_t>{64, 536, 65495}) {
    CAPTURE(mss);
    s.send.mss = mss;
    CHECK(validate_snapshot(s).has_value());
  }
}

TEST_CASE("a send window above the largest announced one is inconsistent") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.send.snd_wnd = s.send.snd_wnd_max + 1;
  CHECK(validate_error(s) == SnapshotError::inconsistent);
  s.send.snd_wnd = s.send.snd_wnd_max;
  CHECK(validate_snapshot(s).has_value());
}

TEST_CASE("receive windows above 2^30 are a bad field") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.receive.rcv_wnd = (1u << 30) + 1;
  CHECK(validate_error(s) == SnapshotError::bad_field);
  s = ipv4_snapshot();
  s.receive.rcv_ann_wnd = (1u << 30) + 1;
  CHECK(validate_error(s) == SnapshotError::bad_field);
  s.receive.rcv_wnd = 1u << 30;
  s.receive.rcv_ann_wnd = 1u << 30;
  CHECK(validate_snapshot(s).has_value());
}

TEST_CASE("a retransmission timeout of zero or less is a bad field") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.send.rto = 0;
  CHECK(validate_error(s) == SnapshotError::bad_field);
  s.send.rto = -1;
  CHECK(validate_error(s) == SnapshotError::bad_field);
  CHECK(decode_error(encode_snapshot(s)) == SnapshotError::bad_field);
}

TEST_CASE("every snapshot error has a distinct non-empty name") {
  std::set<std::string> names;
  for (SnapshotError e :
       {SnapshotError::truncated, SnapshotError::bad_magic, SnapshotError::unknown_version, SnapshotError::oversized,
        SnapshotError::trailing_bytes, SnapshotError::bad_field, SnapshotError::inconsistent}) {
    const char* name = snapshot_error_name(e);
    REQUIRE(name != nullptr);
    CHECK(std::string_view(name).size() > 0);
    names.insert(name);
  }
  CHECK(names.size() == 7);
  CHECK(std::string_view(snapshot_error_name(SnapshotError::truncated)) == "truncated");
}

// small_ipv4_hex with flag 0x0002 and the owner section appended (body 117 + 32 bytes).
Bytes small_ipv4_with_owner() {
  Bytes bytes = from_hex(small_ipv4_hex);
  bytes[7] = 0x02;
  store_be32(bytes, body_length_offset, 117 + 32);
  for (uint8_t i = 0; i < 32; ++i) bytes.push_back(static_cast<uint8_t>(0xA0 + i));
  return bytes;
}

TEST_CASE("known bytes of a snapshot with an owner section decode and re-encode identically") {
  const Bytes bytes = small_ipv4_with_owner();
  const auto r = decode_snapshot(bytes);
  REQUIRE(r.has_value());
  REQUIRE(r->owner.has_value());
  for (size_t i = 0; i < 32; ++i) CHECK((*r->owner)[i] == 0xA0 + i);
  CHECK(encode_snapshot(*r) == bytes);
  ConnectionSnapshot plain = *r;
  plain.owner.reset();
  CHECK(encode_snapshot(plain) == from_hex(small_ipv4_hex));
}

TEST_CASE("an owner section comes after the segment-MAC section, and both round-trip") {
  ConnectionSnapshot s = ipv4_snapshot();
  s.segment_mac = mac_state(s.connection_id);
  s.owner.emplace();
  s.owner->fill(0x5A);
  check_round_trip(s);
  const Bytes both = encode_snapshot(s);
  CHECK(both[7] == 0x03);
  CHECK(Bytes(both.end() - 32, both.end()) == Bytes(32, 0x5A));
  s.owner.reset();
  CHECK(both.size() == encode_snapshot(s).size() + 32);
}

TEST_CASE("every truncation of a snapshot with an owner section is rejected as truncated") {
  const Bytes bytes = small_ipv4_with_owner();
  for (size_t n = 0; n < bytes.size(); ++n) {
    CAPTURE(n);
    CHECK(decode_error(Bytes(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n))) ==
          SnapshotError::truncated);
    if (n >= 12) {
      Bytes cut(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
      store_be32(cut, body_length_offset, static_cast<uint32_t>(n - 12));
      CHECK(decode_error(cut) == SnapshotError::truncated);
    }
  }
}
