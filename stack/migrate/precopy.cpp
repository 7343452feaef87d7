#include "stack/migrate/precopy.hpp"

#include <charconv>

#include "stack/migrate/control_frame.hpp"
#include "stack/wire/byte_reader.hpp"
#include "stack/wire/byte_writer.hpp"

namespace roam::migrate {

namespace {

// How far `seq` lies past `first` when it lies within [first, first + length]; none
// otherwise (before `first`, or past the end). Modulo 2^32 (RFC 9293 section 3.4).
std::optional<uint32_t> offset_in(uint32_t first, uint32_t length, uint32_t seq) {
  uint32_t offset = seq - first;
  if (offset > length) return std::nullopt;
  return offset;
}

}  // namespace

const char* precopy_payload_error_name(PrecopyPayloadError error) {
  switch (error) {
    case PrecopyPayloadError::truncated:
      return "truncated";
    case PrecopyPayloadError::bad_field:
      return "bad field";
  }
  return "unknown precopy payload error";
}

void append_precopy_frame(uint64_t connection_id, PrecopyStreamKind stream, uint32_t first_seq,
                          std::span<const uint8_t> bytes, std::vector<uint8_t>& out) {
  const size_t at = out.size();
  out.reserve(at + frame_header_bytes + precopy_header_bytes + bytes.size());
  append_frame(FrameType::precopy, std::span<const uint8_t>(), out);  // the header; its length below
  wire::put_u64(out, connection_id);
  wire::put_u8(out, static_cast<uint8_t>(stream));
  wire::put_u32(out, first_seq);
  wire::put_bytes(out, bytes);
  finish_frame(out, at);
}

namespace {
constexpr std::string_view sync_answer_prefix = "precopied ";
}  // namespace

std::string encode_precopy_sync_answer(uint64_t held_bytes) {
  return std::string(sync_answer_prefix) + std::to_string(held_bytes);
}

std::optional<uint64_t> decode_precopy_sync_answer(std::string_view text) {
  if (!text.starts_with(sync_answer_prefix)) return std::nullopt;
  const std::string_view digits = text.substr(sync_answer_prefix.size());
  // Digits only: from_chars alone would take a prefix of "12x" and no sign is allowed.
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  uint64_t value = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;  // out of range
  return value;
}

Result<PrecopyChunk, PrecopyPayloadError> decode_precopy_payload(std::span<const uint8_t> payload) {
  if (payload.size() <= precopy_header_bytes) return unexpected(PrecopyPayloadError::truncated);
  PrecopyChunk chunk;
  wire::ByteReader fields(payload);
  chunk.connection_id = fields.u64();
  const uint8_t stream = fields.u8();
  if (chunk.connection_id == 0) return unexpected(PrecopyPayloadError::bad_field);
  if (stream != static_cast<uint8_t>(PrecopyStreamKind::send) && stream != static_cast<uint8_t>(PrecopyStreamKind::receive))
    return unexpected(PrecopyPayloadError::bad_field);
  chunk.stream = static_cast<PrecopyStreamKind>(stream);
  chunk.first_seq = fields.u32();
  chunk.bytes = payload.subspan(precopy_header_bytes);
  return chunk;
}

bool PrecopyStore::take(const PrecopyChunk& chunk) {
  Key key{chunk.connection_id, static_cast<uint8_t>(chunk.stream)};
  auto it = streams_.find(key);
  bool continues = it != streams_.end() && it->second.end_seq() == chunk.first_seq &&
                   it->second.bytes.size() + chunk.bytes.size() <= wire::snapshot_max_queue_bytes;
  if (it != streams_.end() && !continues) {
    drop(it);  // re-anchored (or grown past any snapshot's bound): the old bytes are useless
    it = streams_.end();
  }
  bytes_received_ += chunk.bytes.size();
  if (in_use_ + chunk.bytes.size() > budget_) {
    bytes_discarded_ += chunk.bytes.size();
    if (it != streams_.end()) drop(it);  // a stream with a hole is worth nothing
    ++refused_since_sync_;
    return false;
  }
  if (it == streams_.end()) it = streams_.emplace(key, PrecopiedBytes{chunk.first_seq, {}}).first;
  it->second.bytes.insert(it->second.bytes.end(), chunk.bytes.begin(), chunk.bytes.end());
  held_ += chunk.bytes.size();
  in_use_ += chunk.bytes.size();
  return true;
}

void PrecopyStore::drop(std::map<Key, PrecopiedBytes>::iterator it) {
  size_t size = it->second.bytes.size();
  held_ -= size;
  in_use_ -= size;
  bytes_discarded_ += size;
  streams_.erase(it);
}

std::optional<PrecopiedBytes> PrecopyStore::take_out(uint64_t connection_id, PrecopyStreamKind stream) {
  auto it = streams_.find(Key{connection_id, static_cast<uint8_t>(stream)});
  if (it == streams_.end()) return std::nullopt;
  size_t size = it->second.bytes.size();
  held_ -= size;
  in_use_ -= size;
  PrecopiedBytes out = std::move(it->second);
  streams_.erase(it);
  return out;
}

void PrecopyStore::discard(uint64_t connection_id) {
  for (auto stream : {PrecopyStreamKind::send, PrecopyStreamKind::receive}) {
    auto it = streams_.find(Key{connection_id, static_cast<uint8_t>(stream)});
    if (it != streams_.end()) drop(it);
  }
}

void PrecopyStore::clear() {
  while (!streams_.empty()) drop(streams_.begin());
}

uint32_t PrecopyLedger::plan(uint64_t connection_id, PrecopyStreamKind stream, SeqRange queued) {
  if (queued.length() == 0) return queued.end;  // nothing queued: the target keeps what it has
  auto key = std::make_pair(connection_id, static_cast<uint8_t>(stream));
  auto it = ranges_.find(key);
  if (it != ranges_.end()) {
    SeqRange& held = it->second;
    // Continues when the queue still starts within what is held and reaches its end.
    if (offset_in(held.first, held.length(), queued.first) && offset_in(queued.first, queued.length(), held.end) &&
        queued.end - held.first <= wire::snapshot_max_queue_bytes) {
      uint32_t from = held.end;
      held_bytes_ += queued.end - held.end;
      held.end = queued.end;
      return from;
    }
    held_bytes_ -= held.length();
    ranges_.erase(it);
  }
  ranges_.emplace(key, queued);
  held_bytes_ += queued.length();
  return queued.first;
}

std::optional<SeqRange> PrecopyLedger::held(uint64_t connection_id, PrecopyStreamKind stream) const {
  auto it = ranges_.find(std::make_pair(connection_id, static_cast<uint8_t>(stream)));
  if (it == ranges_.end()) return std::nullopt;
  return it->second;
}

Result<Ok, std::string> splice_precopied(wire::ConnectionSnapshot& s, std::optional<PrecopiedBytes>& send,
                                         std::optional<PrecopiedBytes>& receive) {
  if (!s.precopied) return Ok{};
  const wire::SnapshotPrecopied p = *s.precopied;
  // Where each relied-on range starts in the bytes held; it must also end where they end,
  // since the delta carries everything after it.
  auto locate = [](const std::optional<PrecopiedBytes>& held, uint32_t seq, uint32_t length,
                   const char* what) -> Result<size_t, std::string> {
    if (!held) return unexpected(std::string("no pre-copied ") + what + " bytes here");
    auto offset = offset_in(held->first_seq, static_cast<uint32_t>(held->bytes.size()), seq);
    if (!offset || *offset + static_cast<size_t>(length) != held->bytes.size())
      return unexpected(std::string("pre-copied ") + what + " bytes do not match: held [" +
                        std::to_string(held->first_seq) + ", " + std::to_string(held->end_seq()) +
                        "), the snapshot relies on [" + std::to_string(seq) + ", " +
                        std::to_string(static_cast<uint32_t>(seq + length)) + ")");
    return *offset;
  };
  size_t send_skip = 0;
  size_t receive_skip = 0;
  if (p.send_length != 0) {
    auto at = locate(send, p.send_seq, p.send_length, "send");
    if (!at) return unexpected(at.error());
    send_skip = *at;
  }
  if (p.receive_length != 0) {
    auto at = locate(receive, p.receive_seq, p.receive_length, "received");
    if (!at) return unexpected(at.error());
    receive_skip = *at;
  }
  // Everything matches: nothing below can fail.
  if (p.send_length != 0) {
    std::vector<uint8_t> stream = std::move(send->bytes);
    send.reset();
    stream.erase(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(send_skip));
    stream.insert(stream.end(), s.unacked.begin(), s.unacked.end());
    stream.insert(stream.end(), s.unsent.begin(), s.unsent.end());
    const size_t in_flight = s.send.snd_nxt - s.send.snd_una;
    s.unsent.assign(stream.begin() + static_cast<std::ptrdiff_t>(in_flight), stream.end());
    stream.resize(in_flight);
    s.unacked = std::move(stream);
  }
  if (p.receive_length != 0) {
    std::vector<uint8_t> stream = std::move(receive->bytes);
    receive.reset();
    stream.erase(stream.begin(), stream.begin() + static_cast<std::ptrdiff_t>(receive_skip));
    stream.insert(stream.end(), s.received.begin(), s.received.end());
    s.received = std::move(stream);
  }
  s.precopied.reset();
  return Ok{};
}

size_t omit_precopied(wire::ConnectionSnapshot& s, const std::optional<SeqRange>& send,
                      const std::optional<SeqRange>& receive) {
  wire::SnapshotPrecopied p;
  if (send) {
    // The stream from snd_una: unacked, then unsent. What the target holds past snd_una
    // is left out; bytes acknowledged since the pre-copy are before snd_una and skipped.
    const size_t queued = s.unacked.size() + s.unsent.size();
    auto offset = offset_in(send->first, send->length(), s.send.snd_una);
    if (offset && send->length() - *offset <= queued) {
      size_t omit = send->length() - *offset;
      p.send_seq = s.send.snd_una;
      p.send_length = static_cast<uint32_t>(omit);
      size_t from_unacked = std::min(omit, s.unacked.size());
      s.unacked.erase(s.unacked.begin(), s.unacked.begin() + static_cast<std::ptrdiff_t>(from_unacked));
      s.unsent.erase(s.unsent.begin(), s.unsent.begin() + static_cast<std::ptrdiff_t>(omit - from_unacked));
    }
  }
  if (receive && s.state == wire::SnapshotTcpState::established) {
    const uint32_t unread_first = s.receive.rcv_nxt - static_cast<uint32_t>(s.received.size());
    auto offset = offset_in(receive->first, receive->length(), unread_first);
    if (offset && receive->length() - *offset <= s.received.size()) {
      size_t omit = receive->length() - *offset;
      p.receive_seq = unread_first;
      p.receive_length = static_cast<uint32_t>(omit);
      s.received.erase(s.received.begin(), s.received.begin() + static_cast<std::ptrdiff_t>(omit));
    }
  }
  if (p.send_length == 0 && p.receive_length == 0) return 0;
  if (p.receive_length == 0) p.receive_seq = 0;
  if (p.send_length == 0) p.send_seq = s.send.snd_una;
  s.precopied = p;
  return static_cast<size_t>(p.send_length) + p.receive_length;
}

}  // namespace roam::migrate
