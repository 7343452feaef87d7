#include "stack/migrate/ratify.hpp"

#include <algorithm>
#include <cstring>

#include "stack/control/acm_filter.hpp"
#include "stack/wire/byte_reader.hpp"
#include "stack/wire/byte_writer.hpp"

namespace roam::migrate {

const char* ratify_error_name(RatifyError error) {
  switch (error) {
    case RatifyError::truncated:
      return "truncated";
    case RatifyError::trailing_bytes:
      return "trailing bytes";
    case RatifyError::unknown_version:
      return "unknown version";
    case RatifyError::bad_field:
      return "bad field";
    case RatifyError::oversized:
      return "too many addresses";
  }
  return "unknown error";
}

const char* ratify_verdict_name(RatifyVerdict verdict) {
  switch (verdict) {
    case RatifyVerdict::accept:
      return "accepted";
    case RatifyVerdict::not_member:
      return "not from a member of this pool";
    case RatifyVerdict::replayed:
      return "replayed (an old sequence number)";
    case RatifyVerdict::stale:
      return "stale";
    case RatifyVerdict::from_future:
      return "issued in the future";
    case RatifyVerdict::bad_address:
      return "names an unusable address";
  }
  return "unknown verdict";
}

std::vector<uint8_t> encode_ratify(const Ratify& ratify) {
  std::vector<uint8_t> out;
  out.reserve(23 + ratify.addresses.size() * 17);
  wire::put_u8(out, ratify_version);
  wire::put_u64(out, ratify.sequence);
  wire::put_u64(out, ratify.issued_at_ms);
  wire::put_u32(out, ratify.hold_s);
  wire::put_u16(out, static_cast<uint16_t>(ratify.addresses.size()));
  for (const auto& address : ratify.addresses) {
    wire::put_u8(out, address.version);
    wire::put_bytes(out, std::span(address.bytes).first(address.version == 4 ? 4 : 16));
  }
  return out;
}

Result<Ratify, RatifyError> decode_ratify(std::span<const uint8_t> bytes) {
  wire::ByteReader r(bytes);
  uint8_t version = r.u8();
  if (r.failed()) return unexpected(RatifyError::truncated);
  if (version != ratify_version) return unexpected(RatifyError::unknown_version);
  Ratify out;
  out.sequence = r.u64();
  out.issued_at_ms = r.u64();
  out.hold_s = r.u32();
  uint16_t count = r.u16();
  if (r.failed()) return unexpected(RatifyError::truncated);
  if (out.hold_s == 0 || out.hold_s > max_ratify_hold_s) return unexpected(RatifyError::bad_field);
  if (count > max_ratify_addresses) return unexpected(RatifyError::oversized);
  out.addresses.reserve(count);
  for (uint16_t i = 0; i < count; ++i) {
    uint8_t family = r.u8();
    if (r.failed()) return unexpected(RatifyError::truncated);
    if (family != 4 && family != 6) return unexpected(RatifyError::bad_field);
    auto address_bytes = r.take(family == 4 ? 4 : 16);
    if (r.failed()) return unexpected(RatifyError::truncated);
    IpAddress address;
    address.version = family;
    std::memcpy(address.bytes.data(), address_bytes.data(), address_bytes.size());
    out.addresses.push_back(address);
  }
  if (r.remaining() != 0) return unexpected(RatifyError::trailing_bytes);
  return out;
}

RatifyVerdict RatifyFilter::check(const Ratify& ratify, const crypto::PublicKey& sender, bool sender_is_member,
                                  uint64_t now_unix_ms) const {
  if (!sender_is_member) return RatifyVerdict::not_member;
  if (auto last = last_sequence_.find(sender); last != last_sequence_.end() && ratify.sequence <= last->second)
    return RatifyVerdict::replayed;
  if (ratify.issued_at_ms + limits_.max_age_ms < now_unix_ms) return RatifyVerdict::stale;
  if (ratify.issued_at_ms > now_unix_ms + limits_.max_future_ms) return RatifyVerdict::from_future;
  // The same test as an ACM's new address: a client can have none of these.
  for (const auto& address : ratify.addresses)
    if (!control::acceptable_new_address(address, address)) return RatifyVerdict::bad_address;
  return RatifyVerdict::accept;
}

void RatifyFilter::remember(const Ratify& ratify, const crypto::PublicKey& sender) {
  if (!last_sequence_.contains(sender) && last_sequence_.size() >= limits_.max_senders)
    last_sequence_.erase(last_sequence_.begin());
  auto& last = last_sequence_[sender];
  last = std::max(last, ratify.sequence);
}

}  // namespace roam::migrate
