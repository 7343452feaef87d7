// AcmFilter: the checks an authenticated Address Change Message must still pass before a
// client moves anything (seed 003 sections 2.1 and 3.2). The channel already proved who
// sent it and that this frame is new; the filter asks whether this MOVE is new, recent,
// about connections we really have with that sender, and to a place we accept. Pure: the
// caller passes the clock and its connection table. Loop thread only; one filter per peer
// (key and address), kept across reconnects of its channel.
//
// Fresh means: a sequence above every sequence applied from this peer (a re-ordered or
// replayed ACM is refused even inside a new channel), a nonce not seen within the age
// limit, and issued_at within [now - max_age, now + max_future]. A refused ACM changes
// nothing here.
#pragma once

#include <cstdint>
#include <deque>
#include <set>
#include <span>
#include <vector>

#include "stack/control/messages.hpp"
#include "base/ip_address.hpp"

namespace roam::control {

struct AcmLimits {
  uint64_t max_age_ms = 30'000;    // older ACMs are stale (they may describe an old move)
  uint64_t max_future_ms = 5'000;  // clock skew tolerated the other way
};

// One of the client's connections, as the filter sees it.
struct ClientConnection {
  uint64_t id = 0;  // agreed at setup (stack/connection_id.hpp)
  IpAddress remote;
  uint16_t remote_port = 0;
};

enum class AcmVerdict : uint8_t {
  apply,
  replayed,             // sequence not above the last applied, or nonce seen before
  stale,                // issued too long ago
  from_future,          // issued later than our clock allows
  wrong_peer,           // the old address is not the sender's: a host moves only its own
  unknown_connections,  // names no connection we have with this peer at the old endpoint
                        // (never for a transfer notification: it moves none)
  bad_address,          // the new address is unusable (family, unspecified, multicast, loopback)
  untrusted_target,     // the target is not a member of the sender's pool (checked by the Follower)
};
const char* acm_verdict_name(AcmVerdict verdict);

struct AcmDecision {
  AcmVerdict verdict = AcmVerdict::apply;
  std::vector<uint64_t> connections;  // apply: the ids to move (all ours, at the old endpoint)
  size_t unknown_ids = 0;             // ids the ACM named that we do not have (ignored)
};

class AcmFilter {
 public:
  explicit AcmFilter(AcmLimits limits = {}) : limits_(limits) {}

  // `peer`: the address the channel's sender speaks from. `ours`: our connections.
  AcmDecision check(const AddressChange& acm, const IpAddress& peer, std::span<const ClientConnection> ours,
                    uint64_t now_ms) const;
  // Records an applied ACM (its sequence and nonce); prunes nonces past the age limit.
  void remember(const AddressChange& acm, uint64_t now_ms);

  uint64_t last_sequence() const { return last_sequence_; }

 private:
  AcmLimits limits_;
  uint64_t last_sequence_ = 0;
  bool any_ = false;
  struct SeenNonce {
    uint64_t issued_at_ms;
    std::array<uint8_t, 16> nonce;
  };
  std::deque<SeenNonce> nonce_order_;  // oldest first, for pruning
  std::set<std::array<uint8_t, 16>> nonces_;
};

// Whether a client may send its connections to `address` at all.
bool acceptable_new_address(const IpAddress& address, const IpAddress& old_address);

}  // namespace roam::control
