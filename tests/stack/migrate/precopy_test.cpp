// Pre-copy (stack/migrate/precopy.hpp, docs/PROTOCOL.md 4.3 and 5): the precopy frame's
// known bytes and every truncation and bad field; the delta snapshot section (flag 0x0004)
// with its rules; the old server's omit and the new server's splice giving back the whole
// snapshot (acknowledged or read bytes skipped by sequence, across wrap-around); splices
// refused for ranges that do not match, changing nothing; the target's store (continuation,
// re-anchor, budget) and the sender's ledger agreeing with it.
#include "stack/migrate/precopy.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <vector>

#include "stack/migrate/control_frame.hpp"

namespace {

using namespace roam::migrate;
using roam::IpAddress;
using roam::wire::ConnectionSnapshot;
using roam::wire::SnapshotError;
using roam::wire::SnapshotPrecopied;
using roam::wire::SnapshotTcpState;
using Bytes = std::vector<uint8_t>;

Bytes stream_bytes(uint32_t first_seq, size_t n) {
  // The byte at sequence number s is a function of s: any slice can be checked.
  Bytes out(n);
  for (size_t i = 0; i < n; ++i) {
    uint32_t s = first_seq + static_cast<uint32_t>(i);
    out[i] = static_cast<uint8_t>(s ^ (s >> 8) ^ (s >> 16));
  }
  return out;
}

// An established connection: send stream [una, una + unacked + unsent), unread received
// bytes ending at rcv_nxt.
ConnectionSnapshot snapshot(uint32_t una, size_t unacked, size_t unsent, uint32_t rcv_nxt, size_t received) {
  ConnectionSnapshot s;
  s.local_address = *IpAddress::parse("198.18.12.2");
  s.remote_address = *IpAddress::parse("198.18.11.2");
  s.local_port = 7000;
  s.remote_port = 40000;
  s.connection_id = 0x0102030405060708u;
  s.send.snd_una = una;
  s.send.snd_nxt = una + static_cast<uint32_t>(unacked);
  s.send.snd_wnd = 65535;
  s.send.snd_wnd_max = 65535;
  s.send.mss = 1460;
  s.send.rto = 3;
  s.receive.rcv_nxt = rcv_nxt;
  s.receive.rcv_wnd = 65535;
  s.receive.rcv_ann_wnd = 65535;
  Bytes send = stream_bytes(una, unacked + unsent);
  s.unacked.assign(send.begin(), send.begin() + static_cast<std::ptrdiff_t>(unacked));
  s.unsent.assign(send.begin() + static_cast<std::ptrdiff_t>(unacked), send.end());
  s.received = stream_bytes(rcv_nxt - static_cast<uint32_t>(received), received);
  s.app_state = {0};
  return s;
}

bool same_streams(const ConnectionSnapshot& a, const ConnectionSnapshot& b) {
  return a.unacked == b.unacked && a.unsent == b.unsent && a.received == b.received && a.precopied == b.precopied;
}

PrecopiedBytes held(uint32_t first, size_t n) { return PrecopiedBytes{first, stream_bytes(first, n)}; }

}  // namespace

TEST_CASE("a precopy frame has the documented bytes and its payload decodes back") {
  Bytes frame;
  append_precopy_frame(0x0102030405060708u, PrecopyStreamKind::send, 0xA0B0C0D0u, Bytes{0xEE, 0xFF}, frame);
  const Bytes expected = {0x00, 0x00, 0x00, 0x0F, 0x09,                          // length 15, type 9
                          0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,        // connection id
                          0x01,                                                  // stream: send
                          0xA0, 0xB0, 0xC0, 0xD0,                                // first seq
                          0xEE, 0xFF};
  CHECK(frame == expected);
  FrameReader reader;
  reader.feed(frame);
  auto read = reader.next();
  REQUIRE(read);
  REQUIRE(read->has_value());
  CHECK((*read)->type == FrameType::precopy);
  auto chunk = decode_precopy_payload((*read)->payload);
  REQUIRE(chunk);
  CHECK(chunk->connection_id == 0x0102030405060708u);
  CHECK(chunk->stream == PrecopyStreamKind::send);
  CHECK(chunk->first_seq == 0xA0B0C0D0u);
  CHECK(Bytes(chunk->bytes.begin(), chunk->bytes.end()) == Bytes{0xEE, 0xFF});
}

TEST_CASE("every truncation of a precopy payload, an empty one included, is refused") {
  Bytes frame;
  append_precopy_frame(7, PrecopyStreamKind::receive, 1, Bytes{0x42}, frame);
  Bytes payload(frame.begin() + 5, frame.end());
  for (size_t n = 0; n < payload.size(); ++n) {
    CAPTURE(n);
    auto chunk = decode_precopy_payload(std::span<const uint8_t>(payload.data(), n));
    REQUIRE_FALSE(chunk);
    CHECK(chunk.error() == PrecopyPayloadError::truncated);
  }
  CHECK(decode_precopy_payload(payload));
}

TEST_CASE("a precopy payload with connection id 0 or an unknown stream is a bad field") {
  Bytes frame;
  append_precopy_frame(7, PrecopyStreamKind::send, 1, Bytes{0x42}, frame);
  Bytes payload(frame.begin() + 5, frame.end());
  for (uint8_t stream : {uint8_t{0}, uint8_t{3}, uint8_t{0xFF}}) {
    Bytes bad = payload;
    bad[8] = stream;
    CHECK(decode_precopy_payload(bad).error() == PrecopyPayloadError::bad_field);
  }
  Bytes no_id = payload;
  no_id[7] = 0;
  CHECK(decode_precopy_payload(no_id).error() == PrecopyPayloadError::bad_field);
}

TEST_CASE("a delta snapshot's pre-copied section has the documented bytes, round-trips, and every truncation is refused") {
  ConnectionSnapshot s = snapshot(1000, 10, 20, 5000, 8);
  s.unacked.erase(s.unacked.begin(), s.unacked.begin() + 4);  // 4 bytes left out
  s.received.erase(s.received.begin(), s.received.begin() + 3);
  s.precopied = SnapshotPrecopied{1000, 4, 5000 - 8, 3};
  REQUIRE(roam::wire::validate_snapshot(s));
  Bytes bytes = roam::wire::encode_snapshot(s);
  CHECK(bytes[7] == 0x04);  // flags
  const Bytes section = {0x00, 0x00, 0x03, 0xE8, 0x00, 0x00, 0x00, 0x04,
                         0x00, 0x00, 0x13, 0x80, 0x00, 0x00, 0x00, 0x03};
  CHECK(Bytes(bytes.end() - 16, bytes.end()) == section);
  auto decoded = roam::wire::decode_snapshot(bytes);
  REQUIRE(decoded);
  CHECK(same_streams(*decoded, s));
  CHECK(roam::wire::encode_snapshot(*decoded) == bytes);
  for (size_t cut = 1; cut <= 16; ++cut) {
    Bytes shorter(bytes.begin(), bytes.end() - static_cast<std::ptrdiff_t>(cut));
    uint32_t body = static_cast<uint32_t>(shorter.size() - 12);
    shorter[8] = static_cast<uint8_t>(body >> 24);
    shorter[9] = static_cast<uint8_t>(body >> 16);
    shorter[10] = static_cast<uint8_t>(body >> 8);
    shorter[11] = static_cast<uint8_t>(body);
    CAPTURE(cut);
    CHECK(roam::wire::decode_snapshot(shorter).error() == SnapshotError::truncated);
  }
}

TEST_CASE("malformed pre-copied ranges are refused by the snapshot's rules") {
  auto check_error = [](ConnectionSnapshot s, SnapshotError error) {
    CHECK(roam::wire::validate_snapshot(s).error() == error);
    // Encoded anyway (encode does not validate), the decoder refuses the same way.
    CHECK(roam::wire::decode_snapshot(roam::wire::encode_snapshot(s)).error() == error);
  };
  ConnectionSnapshot base = snapshot(1000, 10, 20, 5000, 8);
  base.unacked.erase(base.unacked.begin(), base.unacked.begin() + 4);
  base.precopied = SnapshotPrecopied{1000, 4, 0, 0};
  REQUIRE(roam::wire::validate_snapshot(base));
  {  // nothing left out
    auto s = base;
    s.precopied = SnapshotPrecopied{1000, 0, 0, 0};
    s.unacked = snapshot(1000, 10, 20, 5000, 8).unacked;
    check_error(s, SnapshotError::bad_field);
  }
  {  // not from snd_una
    auto s = base;
    s.precopied->send_seq = 1001;
    check_error(s, SnapshotError::inconsistent);
  }
  {  // unacked not what remains of snd_una..snd_nxt
    auto s = base;
    s.precopied->send_length = 5;
    check_error(s, SnapshotError::inconsistent);
  }
  {  // received bytes that do not end at rcv_nxt
    auto s = base;
    s.precopied->receive_seq = 5000 - 8;
    s.precopied->receive_length = 2;
    check_error(s, SnapshotError::inconsistent);
  }
  {  // received bytes left out of a connection past its peer's FIN
    auto s = base;
    s.state = SnapshotTcpState::close_wait;
    s.received.erase(s.received.begin(), s.received.begin() + 3);
    s.precopied->receive_seq = 5000 - 8;
    s.precopied->receive_length = 3;
    check_error(s, SnapshotError::inconsistent);
  }
  {  // a receive seq without a receive length
    auto s = base;
    s.precopied->receive_seq = 1;
    check_error(s, SnapshotError::inconsistent);
  }
  {  // more left out than a queue may hold
    auto s = base;
    s.precopied->receive_length = (64u << 20) + 1;
    check_error(s, SnapshotError::oversized);
  }
}

TEST_CASE("omit then splice gives back the whole snapshot: nothing acknowledged, some acknowledged, into unsent") {
  struct Case {
    const char* name;
    uint32_t held_first;
    size_t held_length;
    uint32_t una;  // at the freeze
  };
  // Sequence numbers near 2^32 wrap inside the ranges.
  const uint32_t base = 0xFFFFFF00u;
  for (const Case& c : {Case{"exactly", base, 300, base}, Case{"acked since", base, 300, base + 100},
                        Case{"all unacked left out, some unsent", base, 300, base + 200},
                        Case{"held ends at una", base, 300, base + 300}}) {
    CAPTURE(c.name);
    // At the freeze: 60 unacked, 500 unsent from una; 40 unread bytes up to rcv_nxt, of which
    // the target holds [rcv_nxt - 100, rcv_nxt - 10) (the app read 60 since).
    const uint32_t rcv_nxt = 0x00000020u;
    ConnectionSnapshot whole = snapshot(c.una, 60, 500, rcv_nxt, 40);
    ConnectionSnapshot delta = whole;
    SeqRange send_range{c.held_first, c.held_first + static_cast<uint32_t>(c.held_length)};
    SeqRange receive_range{rcv_nxt - 100, rcv_nxt - 10};
    size_t omitted = omit_precopied(delta, send_range, receive_range);
    size_t send_omitted = send_range.end - c.una;
    CHECK(omitted == send_omitted + 30);
    REQUIRE(roam::wire::validate_snapshot(delta));
    CHECK(delta.unacked.size() + delta.unsent.size() == 560 - send_omitted);
    CHECK(delta.received.size() == 10);
    auto decoded = roam::wire::decode_snapshot(roam::wire::encode_snapshot(delta));
    REQUIRE(decoded);
    std::optional<PrecopiedBytes> send = held(c.held_first, c.held_length);
    std::optional<PrecopiedBytes> receive = held(rcv_nxt - 100, 90);
    REQUIRE(splice_precopied(*decoded, send, receive));
    CHECK_FALSE(decoded->precopied);
    CHECK(same_streams(*decoded, whole));
    CHECK(roam::wire::validate_snapshot(*decoded));
  }
}

TEST_CASE("omit leaves out nothing when the peer acknowledged (or the app read) past what is held") {
  ConnectionSnapshot whole = snapshot(2000, 10, 10, 900, 5);
  ConnectionSnapshot delta = whole;
  CHECK(omit_precopied(delta, SeqRange{1000, 1500}, SeqRange{100, 800}) == 0);
  CHECK_FALSE(delta.precopied);
  CHECK(same_streams(delta, whole));
  // Past the FIN (close_wait) received bytes are never left out; send bytes still are.
  ConnectionSnapshot closing = snapshot(2000, 10, 10, 900, 5);
  closing.state = SnapshotTcpState::close_wait;
  CHECK(omit_precopied(closing, SeqRange{2000, 2015}, SeqRange{895, 900}) == 15);
  CHECK(closing.precopied->receive_length == 0);
  CHECK(closing.received.size() == 5);
}

TEST_CASE("a splice whose held bytes do not match the ranges is refused and changes nothing") {
  ConnectionSnapshot whole = snapshot(1000, 50, 50, 5000, 20);
  ConnectionSnapshot delta = whole;
  REQUIRE(omit_precopied(delta, SeqRange{900, 1080}, SeqRange{4980, 4990}) == 90);
  struct Case {
    const char* name;
    std::optional<PrecopiedBytes> send;
    std::optional<PrecopiedBytes> receive;
  };
  std::vector<Case> cases;
  cases.push_back({"no send bytes", std::nullopt, held(4980, 10)});
  cases.push_back({"no received bytes", held(900, 180), std::nullopt});
  cases.push_back({"send bytes end one short", held(900, 179), held(4980, 10)});
  cases.push_back({"send bytes end one past", held(900, 181), held(4980, 10)});
  cases.push_back({"send bytes start after snd_una", held(1001, 79), held(4980, 10)});
  cases.push_back({"received bytes elsewhere", held(900, 180), held(4981, 10)});
  for (auto& c : cases) {
    CAPTURE(c.name);
    ConnectionSnapshot s = delta;
    auto send_before = c.send;
    auto result = splice_precopied(s, c.send, c.receive);
    CHECK_FALSE(result);
    CHECK(same_streams(s, delta));
    CHECK(c.send.has_value() == send_before.has_value());  // not consumed
  }
}

TEST_CASE("the target's store appends continuations, replaces re-anchored streams and keeps to its budget") {
  size_t in_use = 0;
  PrecopyStore store(100, in_use);
  Bytes a = stream_bytes(10, 40);
  CHECK(store.take(PrecopyChunk{5, PrecopyStreamKind::send, 10, a}));
  Bytes b = stream_bytes(50, 20);
  CHECK(store.take(PrecopyChunk{5, PrecopyStreamKind::send, 50, b}));  // continues at 50
  CHECK(store.held_bytes() == 60);
  CHECK(in_use == 60);
  Bytes c = stream_bytes(200, 30);
  CHECK(store.take(PrecopyChunk{5, PrecopyStreamKind::send, 200, c}));  // re-anchored
  CHECK(store.held_bytes() == 30);
  CHECK(store.bytes_discarded() == 60);
  Bytes r = stream_bytes(7, 80);
  CHECK_FALSE(store.take(PrecopyChunk{6, PrecopyStreamKind::receive, 7, r}));  // 30 + 80 > 100
  CHECK(store.take_refusals() == 1);
  CHECK(store.take_refusals() == 0);
  auto out = store.take_out(5, PrecopyStreamKind::send);
  REQUIRE(out);
  CHECK(out->first_seq == 200);
  CHECK(out->bytes == c);
  CHECK(in_use == 0);
  CHECK_FALSE(store.take_out(5, PrecopyStreamKind::send));
  CHECK(store.take(PrecopyChunk{6, PrecopyStreamKind::receive, 7, r}));
  store.discard(6);
  CHECK(store.held_bytes() == 0);
  CHECK(in_use == 0);
  CHECK(store.bytes_received() == 40 + 20 + 30 + 80 + 80);
}

TEST_CASE("the sender's ledger plans continuations and re-anchors exactly as the store takes them") {
  size_t in_use = 0;
  PrecopyStore store(1u << 20, in_use);
  PrecopyLedger ledger;
  // Queue windows of one send stream over several rounds, across 2^32: it grows, the peer
  // acknowledges part, then acknowledges past everything held, then it empties.
  const uint32_t b = 0xFFFFFFF0u;
  std::vector<SeqRange> rounds = {{b, b + 100}, {b + 30, b + 180}, {b + 180, b + 180}, {b + 400, b + 450},
                                  {b + 400, b + 460}};
  for (const SeqRange& queued : rounds) {
    uint32_t from = ledger.plan(9, PrecopyStreamKind::send, queued);
    if (from != queued.end) {
      Bytes bytes = stream_bytes(from, queued.end - from);
      REQUIRE(store.take(PrecopyChunk{9, PrecopyStreamKind::send, from, bytes}));
    }
    CHECK(ledger.held_bytes() == store.held_bytes());
  }
  auto range = ledger.held(9, PrecopyStreamKind::send);
  REQUIRE(range);
  CHECK(range->first == b + 400);
  CHECK(range->end == b + 460);
  auto out = store.take_out(9, PrecopyStreamKind::send);
  REQUIRE(out);
  CHECK(out->first_seq == range->first);
  CHECK(out->bytes == stream_bytes(b + 400, 60));
}

TEST_CASE("the precopy_sync answer: \"precopied BYTES\" round-trips; anything else is a refusal") {
  for (uint64_t held : {uint64_t{0}, uint64_t{1}, uint64_t{257232}, UINT64_MAX}) {
    CAPTURE(held);
    CHECK(decode_precopy_sync_answer(encode_precopy_sync_answer(held)) == held);
  }
  CHECK(encode_precopy_sync_answer(42) == "precopied 42");
  for (const char* text : {"", "precopied", "precopied ", "precopied 12x", "precopied -1", "precopied +1",
                           "precopied  1", "precopied 18446744073709551616", "error precopy: 1 chunk(s) refused",
                           "PRECOPIED 1"}) {
    CAPTURE(text);
    CHECK_FALSE(decode_precopy_sync_answer(text));
  }
}
