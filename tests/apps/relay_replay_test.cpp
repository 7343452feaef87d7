// Proxy session recovery, pure parts (PROTOCOL.md 14.8): the proxy checkpoint state and its
// rebase, RELAY_RESUME / RELAY_RESUMED (the documented example bytes), the relay's replay
// buffer (eviction, copies across blocks) and its resume decision, including every refusal.
#include "apps/relay_replay.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <map>
#include <span>
#include <vector>

#include "apps/proxy_resume_state.hpp"

namespace {

using namespace roam;
using namespace roam::relay;

std::vector<uint8_t> hex(const char* text) {
  std::vector<uint8_t> out;
  auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
  for (const char* p = text; *p != '\0';) {
    if (*p == ' ') {
      ++p;
      continue;
    }
    out.push_back(static_cast<uint8_t>(nibble(p[0]) * 16 + nibble(p[1])));
    p += 2;
  }
  return out;
}

// The decoders read a carrier's first bytes, a fixed-size view; the encoders' vectors are
// exactly that long.
std::span<const uint8_t, resume_request_bytes> request_head(const std::vector<uint8_t>& bytes) {
  return std::span<const uint8_t, resume_request_bytes>(bytes);
}
std::span<const uint8_t, resume_answer_bytes> answer_head(const std::vector<uint8_t>& bytes) {
  return std::span<const uint8_t, resume_answer_bytes>(bytes);
}

std::vector<uint8_t> pattern(size_t n, uint64_t from) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<uint8_t>((from + i) * 131 + ((from + i) >> 8));
  return out;
}

TEST_CASE("proxy resume state: the documented bytes, round trip and refusals") {
  ProxyResumeState state{0x0123456789abcdef, 1048576, 74};
  auto bytes = encode_proxy_resume_state(state);
  CHECK(bytes == hex("02 0123456789abcdef 0000000000100000 000000000000004a"));
  auto decoded = decode_proxy_resume_state(bytes);
  REQUIRE(decoded);
  CHECK(*decoded == state);

  auto short_one = bytes;
  short_one.pop_back();
  CHECK(decode_proxy_resume_state(short_one).error() == ProxyResumeStateError::truncated);
  auto long_one = bytes;
  long_one.push_back(0);
  CHECK(decode_proxy_resume_state(long_one).error() == ProxyResumeStateError::trailing_bytes);
  auto live_move = bytes;
  live_move[0] = 1;  // the live-move state's version: never a checkpoint's
  CHECK(decode_proxy_resume_state(live_move).error() == ProxyResumeStateError::unknown_version);
  CHECK(decode_proxy_resume_state(encode_proxy_resume_state({0, 1, 1})).error() == ProxyResumeStateError::bad_field);
  CHECK(decode_proxy_resume_state(encode_proxy_resume_state({1, max_stream_offset, 1})).error() ==
        ProxyResumeStateError::bad_field);
  CHECK(decode_proxy_resume_state(encode_proxy_resume_state({1, 1, max_stream_offset})).error() ==
        ProxyResumeStateError::bad_field);
  CHECK_FALSE(decode_proxy_resume_state({}));
}

TEST_CASE("proxy resume state moves by the client's view, and not out of the stream") {
  ProxyResumeState state{7, 5000, 300};
  auto forward = rebase_proxy_resume_state(state, 1460, -20);
  REQUIRE(forward);
  CHECK(*forward == ProxyResumeState{7, 6460, 280});
  auto back = rebase_proxy_resume_state(state, -5000, 0);  // the client had nothing yet
  REQUIRE(back);
  CHECK(back->down == 0);
  CHECK_FALSE(rebase_proxy_resume_state(state, -5001, 0));
  CHECK_FALSE(rebase_proxy_resume_state(state, 0, -301));
  CHECK_FALSE(rebase_proxy_resume_state({7, max_stream_offset - 1, 0}, 1, 0));
  CHECK_FALSE(rebase_proxy_resume_state(state, INT64_MAX, 0));
  CHECK_FALSE(rebase_proxy_resume_state(state, 0, INT64_MIN));
}

TEST_CASE("proxy move state: offsets or none, and nothing else") {
  auto with = encode_proxy_move_state(ProxyStreamOffsets{0x10, 0x0200});
  CHECK(with == hex("03 0000000000000010 0000000000000200"));
  auto decoded = decode_proxy_move_state(with);
  REQUIRE(decoded);
  CHECK(*decoded == ProxyStreamOffsets{0x10, 0x0200});
  CHECK(encode_proxy_move_state(std::nullopt) == std::vector<uint8_t>{1});
  auto bare = decode_proxy_move_state(std::vector<uint8_t>{1});
  REQUIRE(bare);
  CHECK_FALSE(bare->has_value());
  CHECK_FALSE(decode_proxy_move_state({}));
  CHECK_FALSE(decode_proxy_move_state(std::vector<uint8_t>{3}));
  CHECK_FALSE(decode_proxy_move_state(std::vector<uint8_t>{1, 0}));
  CHECK_FALSE(decode_proxy_move_state(std::vector<uint8_t>{2}));
  auto versioned = with;
  versioned[0] = 2;
  CHECK_FALSE(decode_proxy_move_state(versioned));
  CHECK_FALSE(decode_proxy_move_state(encode_proxy_move_state(ProxyStreamOffsets{0, max_stream_offset})));
}

TEST_CASE("RELAY_RESUME: the documented bytes, round trip and refusals") {
  ResumeRequest request{0x0123456789abcdef, 0x100000, 74};
  auto bytes = encode_resume_request(request);
  CHECK(bytes == hex("52535252 01 0123456789abcdef 0000000000100000 000000000000004a"));
  auto decoded = decode_resume_request(request_head(bytes));
  REQUIRE(decoded);
  CHECK(*decoded == request);

  auto bad = bytes;
  bad[3] = 'A';
  CHECK(decode_resume_request(request_head(bad)).error() == ResumeReason::bad_magic);
  bad = bytes;
  bad[4] = 2;
  CHECK(decode_resume_request(request_head(bad)).error() == ResumeReason::unknown_version);
  CHECK(decode_resume_request(request_head(encode_resume_request({0, 1, 1}))).error() == ResumeReason::bad_field);
  CHECK(decode_resume_request(request_head(encode_resume_request({1, max_stream_offset, 1}))).error() ==
        ResumeReason::bad_field);
  CHECK(decode_resume_request(request_head(encode_resume_request({1, 1, max_stream_offset}))).error() ==
        ResumeReason::bad_field);
}

TEST_CASE("RELAY_RESUMED: the documented bytes, round trip and malformed answers") {
  auto resumed = encode_resume_answer({ResumeReason::none, 6});
  CHECK(resumed == hex("52535241 01 00 00 0000000000000006"));
  auto refused = encode_resume_answer({ResumeReason::replay_gone, 99});  // a refusal's skip is 0 on the wire
  CHECK(refused == hex("52535241 01 01 06 0000000000000000"));
  REQUIRE(decode_resume_answer(answer_head(resumed)));
  CHECK(*decode_resume_answer(answer_head(resumed)) == ResumeAnswer{ResumeReason::none, 6});
  REQUIRE(decode_resume_answer(answer_head(refused)));
  CHECK(decode_resume_answer(answer_head(refused))->reason == ResumeReason::replay_gone);
  for (uint8_t reason = 1; reason <= max_resume_reason; ++reason) {
    auto each = encode_resume_answer({static_cast<ResumeReason>(reason), 0});
    CHECK(decode_resume_answer(answer_head(each)));
  }

  auto mutate = [](std::vector<uint8_t> bytes, size_t at, uint8_t value) {
    bytes[at] = value;
    return bytes;
  };
  CHECK(decode_resume_answer(answer_head(mutate(resumed, 0, 'X'))).error() == AnswerError::bad_magic);
  CHECK(decode_resume_answer(answer_head(mutate(resumed, 4, 9))).error() == AnswerError::unknown_version);
  CHECK(decode_resume_answer(answer_head(mutate(resumed, 5, 2))).error() == AnswerError::malformed);  // status 2
  CHECK(decode_resume_answer(answer_head(mutate(resumed, 6, 3))).error() ==
        AnswerError::malformed);  // resumed, reason 3
  CHECK(decode_resume_answer(answer_head(mutate(refused, 6, 0))).error() ==
        AnswerError::malformed);  // refused, reason 0
  CHECK(decode_resume_answer(answer_head(mutate(refused, 6, 9))).error() == AnswerError::malformed);  // unknown reason
  CHECK(decode_resume_answer(answer_head(mutate(refused, 14, 1))).error() ==
        AnswerError::malformed);  // refused with a skip
  CHECK(decode_resume_answer(answer_head(mutate(resumed, 10, 0x40))).error() ==
        AnswerError::malformed);  // skip >= 2^30
}

TEST_CASE("replay buffer keeps the last bytes by offset, across blocks and evictions") {
  ReplayBuffer buffer(200 * 1024);
  CHECK(buffer.base() == 0);
  CHECK(buffer.taken() == 0);
  REQUIRE(buffer.copy_from(0));
  CHECK(buffer.copy_from(0)->empty());
  CHECK_FALSE(buffer.copy_from(1));

  // Appends of odd sizes, so blocks and reads are never aligned; the reference is the
  // whole stream.
  std::vector<uint8_t> stream;
  for (size_t n : {1000u, 70000u, 3u, 65536u, 100001u, 12345u}) {
    auto chunk = pattern(n, stream.size());
    stream.insert(stream.end(), chunk.begin(), chunk.end());
    buffer.append(chunk);
  }
  CHECK(buffer.taken() == stream.size());
  CHECK(buffer.size() == 200 * 1024);
  CHECK(buffer.base() == stream.size() - 200 * 1024);
  CHECK(buffer.capacity() - buffer.size() == 0);
  for (uint64_t from : {buffer.base(), buffer.base() + 1, buffer.base() + 65535, uint64_t{200000}, buffer.taken() - 1,
                        buffer.taken()}) {
    auto copy = buffer.copy_from(from);
    REQUIRE(copy);
    CHECK(*copy == std::vector<uint8_t>(stream.begin() + static_cast<std::ptrdiff_t>(from), stream.end()));
  }
  CHECK_FALSE(buffer.copy_from(buffer.base() - 1));
  CHECK_FALSE(buffer.copy_from(buffer.taken() + 1));

  // An append larger than the capacity keeps only its tail.
  auto huge = pattern(300 * 1024, stream.size());
  stream.insert(stream.end(), huge.begin(), huge.end());
  buffer.append(huge);
  CHECK(buffer.taken() == stream.size());
  CHECK(buffer.size() == 200 * 1024);
  CHECK(*buffer.copy_from(buffer.base()) ==
        std::vector<uint8_t>(stream.end() - 200 * 1024, stream.end()));

  ReplayBuffer off(0);  // a relay without a replay: counts, keeps nothing
  off.append(pattern(10, 0));
  CHECK(off.taken() == 10);
  CHECK(off.base() == 10);
  CHECK_FALSE(off.copy_from(9));
  CHECK(off.copy_from(10)->empty());
}

TEST_CASE("the relay's resume decision: each refusal, in order, and the skip") {
  RelayedView relayed{1000, 5000, 300, true};
  CHECK(decide_resume({9, 1000, 300}, &relayed) == ResumeAnswer{ResumeReason::none, 0});
  CHECK(decide_resume({9, 5000, 294}, &relayed) == ResumeAnswer{ResumeReason::none, 6});
  CHECK(decide_resume({9, 1000, 300}, nullptr).reason == ResumeReason::unknown_connection);
  RelayedView stranger = relayed;
  stranger.owner_allowed = false;
  CHECK(decide_resume({9, 999, 301}, &stranger).reason == ResumeReason::not_owner);  // before the offsets
  CHECK(decide_resume({9, 999, 300}, &relayed).reason == ResumeReason::replay_gone);
  CHECK(decide_resume({9, 5001, 300}, &relayed).reason == ResumeReason::ahead);
  CHECK(decide_resume({9, 2000, 301}, &relayed).reason == ResumeReason::upstream_gap);
  RelayedView far{0, 0, max_skip, true};
  CHECK(decide_resume({9, 0, 0}, &far).reason == ResumeReason::bad_field);
  CHECK(decide_resume({9, 0, 1}, &far) == ResumeAnswer{ResumeReason::none, max_skip - 1});
}

TEST_CASE("a relayed connection is taken over by its owner or a member of the owner's pool only") {
  OwnerKey a{}, b{}, c{};
  a[0] = 1;
  b[0] = 2;
  c[0] = 3;
  PoolKey pool{}, other{};
  pool[0] = 7;
  other[0] = 8;
  std::map<OwnerKey, PoolKey> pools{{a, pool}, {b, pool}, {c, other}};
  auto pool_of = [&pools](const OwnerKey& key) -> std::optional<PoolKey> {
    auto it = pools.find(key);
    if (it == pools.end()) return std::nullopt;
    return it->second;
  };
  CHECK(resume_owner_allowed(a, a, nullptr));
  CHECK(resume_owner_allowed(a, b, pool_of));
  CHECK_FALSE(resume_owner_allowed(a, c, pool_of));
  CHECK_FALSE(resume_owner_allowed(a, b, nullptr));
  OwnerKey lone{};
  lone[0] = 9;
  CHECK_FALSE(resume_owner_allowed(lone, a, pool_of));  // the old owner proved no pool
  CHECK_FALSE(resume_owner_allowed(std::nullopt, a, pool_of));
  CHECK_FALSE(resume_owner_allowed(a, std::nullopt, pool_of));
}

}  // namespace
