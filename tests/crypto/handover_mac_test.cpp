// The NAT handover's tags (crypto/handover_mac): every field they cover changes them, the
// token is the key, and verification is exact.
#include "crypto/handover_mac.hpp"

#include <doctest/doctest.h>

namespace {

using namespace roam::crypto;

const HandoverFields base{HandoverSegmentKind::syn, 0x0123456789abcdefULL, 1000, 0, 5000};

TEST_CASE("a handover tag depends on the token and on every field it covers") {
  HandoverToken token = random_handover_token();
  HandoverTag tag = handover_tag(token, base);
  CHECK(handover_tag(token, base) == tag);  // deterministic
  CHECK(verify_handover_tag(token, base, tag));

  HandoverToken other = token;
  other[31] ^= 1;
  CHECK(handover_tag(other, base) != tag);
  CHECK_FALSE(verify_handover_tag(other, base, tag));

  auto changed = [&](auto mutate) {
    HandoverFields f = base;
    mutate(f);
    return handover_tag(token, f) != tag && !verify_handover_tag(token, f, tag);
  };
  CHECK(changed([](HandoverFields& f) { f.kind = HandoverSegmentKind::syn_ack; }));
  CHECK(changed([](HandoverFields& f) { f.connection_id ^= 1; }));
  CHECK(changed([](HandoverFields& f) { f.seq += 1; }));
  CHECK(changed([](HandoverFields& f) { f.ack = 1; }));
  CHECK(changed([](HandoverFields& f) { f.peer_rcv_nxt -= 1; }));

  for (size_t byte = 0; byte < tag.size(); ++byte) {
    HandoverTag flipped = tag;
    flipped[byte] ^= 0x80;
    CHECK_FALSE(verify_handover_tag(token, base, flipped));
  }
}

TEST_CASE("handover tokens are fresh each time") {
  CHECK(random_handover_token() != random_handover_token());
}

}  // namespace
