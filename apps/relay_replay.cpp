#include "apps/relay_replay.hpp"

#include <algorithm>

#include "stack/wire/byte_reader.hpp"
#include "stack/wire/byte_writer.hpp"

namespace roam::relay {

namespace {
constexpr std::array<uint8_t, 4> request_magic = {'R', 'S', 'R', 'R'};
constexpr std::array<uint8_t, 4> answer_magic = {'R', 'S', 'R', 'A'};

bool has_magic(std::span<const uint8_t> bytes, const std::array<uint8_t, 4>& magic) {
  return std::equal(magic.begin(), magic.end(), bytes.begin());
}
}  // namespace

const char* resume_reason_name(ResumeReason reason) {
  switch (reason) {
    case ResumeReason::none:
      return "resumed";
    case ResumeReason::bad_magic:
      return "bad magic";
    case ResumeReason::unknown_version:
      return "unknown version";
    case ResumeReason::bad_field:
      return "bad field";
    case ResumeReason::unknown_connection:
      return "unknown connection";
    case ResumeReason::not_owner:
      return "not owner";
    case ResumeReason::replay_gone:
      return "replay gone";
    case ResumeReason::ahead:
      return "ahead";
    case ResumeReason::upstream_gap:
      return "upstream gap";
  }
  return "unknown reason";
}

std::vector<uint8_t> encode_resume_request(const ResumeRequest& request) {
  std::vector<uint8_t> out;
  out.reserve(resume_request_bytes);
  wire::put_bytes(out, request_magic);
  wire::put_u8(out, resume_version);
  put_proxy_resume_fields(out, request);
  return out;
}

Result<ResumeRequest, ResumeReason> decode_resume_request(std::span<const uint8_t, resume_request_bytes> bytes) {
  if (!has_magic(bytes, request_magic)) return unexpected(ResumeReason::bad_magic);
  wire::ByteReader reader(bytes.subspan(request_magic.size()));
  if (reader.u8() != resume_version) return unexpected(ResumeReason::unknown_version);
  auto request = read_proxy_resume_fields(reader);
  if (!request) return unexpected(ResumeReason::bad_field);
  return *request;
}

std::vector<uint8_t> encode_resume_answer(const ResumeAnswer& answer) {
  std::vector<uint8_t> out;
  out.reserve(resume_answer_bytes);
  wire::put_bytes(out, answer_magic);
  wire::put_u8(out, resume_version);
  wire::put_u8(out, answer.resumed() ? 0 : 1);
  wire::put_u8(out, static_cast<uint8_t>(answer.reason));
  wire::put_u64(out, answer.resumed() ? answer.skip : 0);
  return out;
}

Result<ResumeAnswer, AnswerError> decode_resume_answer(std::span<const uint8_t, resume_answer_bytes> bytes) {
  if (!has_magic(bytes, answer_magic)) return unexpected(AnswerError::bad_magic);
  wire::ByteReader reader(bytes.subspan(answer_magic.size()));
  if (reader.u8() != resume_version) return unexpected(AnswerError::unknown_version);
  const uint8_t status = reader.u8();
  const uint8_t reason = reader.u8();
  const uint64_t skip = reader.u64();
  const bool resumed_ok = status == 0 && reason == 0 && skip < max_skip;
  const bool refused_ok = status == 1 && reason >= 1 && reason <= max_resume_reason && skip == 0;
  if (!resumed_ok && !refused_ok) return unexpected(AnswerError::malformed);
  return ResumeAnswer{static_cast<ResumeReason>(reason), skip};
}

void ReplayBuffer::append(std::span<const uint8_t> bytes) {
  taken_ += bytes.size();
  if (capacity_ == 0) return;
  // Only the last `capacity_` bytes of a large append can stay.
  if (bytes.size() > capacity_) bytes = bytes.subspan(bytes.size() - capacity_);
  while (!bytes.empty()) {
    if (blocks_.empty() || blocks_.back().size() == block_bytes) {
      blocks_.emplace_back();
      blocks_.back().reserve(block_bytes);
    }
    std::vector<uint8_t>& last = blocks_.back();
    const size_t n = std::min(bytes.size(), block_bytes - last.size());
    last.insert(last.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    bytes = bytes.subspan(n);
    size_ += n;
  }
  // Evicts the oldest bytes beyond the capacity: whole blocks, then a part of the front one.
  while (size_ > capacity_) {
    const size_t excess = size_ - capacity_;
    const size_t front_left = blocks_.front().size() - front_skip_;
    if (front_left <= excess) {
      size_ -= front_left;
      blocks_.pop_front();
      front_skip_ = 0;
    } else {
      front_skip_ += excess;
      size_ -= excess;
    }
  }
}

std::optional<std::vector<uint8_t>> ReplayBuffer::copy_from(uint64_t from) const {
  if (from < base() || from > taken_) return std::nullopt;
  size_t skip = static_cast<size_t>(from - base());
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(taken_ - from));
  bool first = true;
  for (const auto& block : blocks_) {
    size_t start = first ? front_skip_ : 0;
    first = false;
    const size_t available = block.size() - start;
    if (skip >= available) {
      skip -= available;
      continue;
    }
    start += skip;
    skip = 0;
    out.insert(out.end(), block.begin() + static_cast<std::ptrdiff_t>(start), block.end());
  }
  return out;
}

ResumeAnswer decide_resume(const ResumeRequest& request, const RelayedView* relayed) {
  if (relayed == nullptr) return {ResumeReason::unknown_connection, 0};
  if (!relayed->owner_allowed) return {ResumeReason::not_owner, 0};
  if (request.down < relayed->base) return {ResumeReason::replay_gone, 0};
  if (request.down > relayed->taken) return {ResumeReason::ahead, 0};
  if (request.up > relayed->received) return {ResumeReason::upstream_gap, 0};
  const uint64_t skip = relayed->received - request.up;
  if (skip >= max_skip) return {ResumeReason::bad_field, 0};
  return {ResumeReason::none, skip};
}

bool resume_owner_allowed(const std::optional<OwnerKey>& old_owner, const std::optional<OwnerKey>& new_owner,
                          const std::function<std::optional<PoolKey>(const OwnerKey&)>& pool_of) {
  if (!old_owner || !new_owner) return false;
  if (*old_owner == *new_owner) return true;
  if (!pool_of) return false;
  auto old_pool = pool_of(*old_owner);
  auto new_pool = pool_of(*new_owner);
  return old_pool && new_pool && *old_pool == *new_pool;
}

}  // namespace roam::relay
