#include "stack/control/acm_filter.hpp"

#include <algorithm>

namespace roam::control {

const char* acm_verdict_name(AcmVerdict verdict) {
  switch (verdict) {
    case AcmVerdict::apply:
      return "applied";
    case AcmVerdict::replayed:
      return "replayed";
    case AcmVerdict::stale:
      return "stale";
    case AcmVerdict::from_future:
      return "issued in the future";
    case AcmVerdict::wrong_peer:
      return "old address is not the sender's";
    case AcmVerdict::unknown_connections:
      return "names no connection of ours";
    case AcmVerdict::bad_address:
      return "unacceptable new address";
    case AcmVerdict::untrusted_target:
      return "target is not a member of the server's pool";
  }
  return "unknown verdict";
}

bool acceptable_new_address(const IpAddress& address, const IpAddress& old_address) {
  if (address.version != old_address.version) return false;
  const auto& b = address.bytes;
  if (address.version == 4) {
    if (b[0] == 0 || b[0] == 127 || b[0] >= 224) return false;  // this-network, loopback, multicast/reserved/broadcast
    return true;
  }
  bool unspecified_or_loopback = std::all_of(b.begin(), b.begin() + 15, [](uint8_t x) { return x == 0; }) && b[15] <= 1;
  if (unspecified_or_loopback) return false;
  if (b[0] == 0xFF) return false;  // multicast
  bool v4_mapped =
      std::all_of(b.begin(), b.begin() + 10, [](uint8_t x) { return x == 0; }) && b[10] == 0xFF && b[11] == 0xFF;
  return !v4_mapped;
}

AcmDecision AcmFilter::check(const AddressChange& acm, const IpAddress& peer,
                             std::span<const ClientConnection> ours, uint64_t now_ms) const {
  AcmDecision decision;
  auto refuse = [&decision](AcmVerdict verdict) {
    decision.verdict = verdict;
    decision.connections.clear();
    return decision;
  };
  if (any_ && acm.sequence <= last_sequence_) return refuse(AcmVerdict::replayed);
  if (nonces_.count(acm.nonce) != 0) return refuse(AcmVerdict::replayed);
  if (acm.issued_at_ms + limits_.max_age_ms < now_ms) return refuse(AcmVerdict::stale);
  if (acm.issued_at_ms > now_ms + limits_.max_future_ms) return refuse(AcmVerdict::from_future);
  if (!(acm.old_address == peer)) return refuse(AcmVerdict::wrong_peer);
  if (!acceptable_new_address(acm.new_address, acm.old_address)) return refuse(AcmVerdict::bad_address);
  // A transfer notification moves nothing: fresh, from its sender, to a usable address
  // is all it must be (the client may have no connection there yet).
  if (acm.scope == AcmScope::transfer) return decision;
  auto at_old_endpoint = [&acm](const ClientConnection& c) {
    return c.remote == acm.old_address && (acm.old_port == 0 || c.remote_port == acm.old_port);
  };
  if (acm.scope == AcmScope::global) {
    for (const auto& c : ours)
      if (at_old_endpoint(c)) decision.connections.push_back(c.id);
  } else {
    for (uint64_t id : acm.connection_ids) {
      auto it = std::find_if(ours.begin(), ours.end(), [id](const ClientConnection& c) { return c.id == id; });
      if (it == ours.end() || !at_old_endpoint(*it)) {
        ++decision.unknown_ids;
        continue;
      }
      if (std::find(decision.connections.begin(), decision.connections.end(), id) == decision.connections.end())
        decision.connections.push_back(id);
    }
  }
  if (decision.connections.empty()) {
    size_t unknown = decision.unknown_ids;
    refuse(AcmVerdict::unknown_connections);
    decision.unknown_ids = unknown;
  }
  return decision;
}

void AcmFilter::remember(const AddressChange& acm, uint64_t now_ms) {
  any_ = true;
  last_sequence_ = std::max(last_sequence_, acm.sequence);
  if (nonces_.insert(acm.nonce).second) nonce_order_.push_back({acm.issued_at_ms, acm.nonce});
  // Nonces older than the age limit cannot come back as fresh: the age check refuses them.
  while (!nonce_order_.empty() && nonce_order_.front().issued_at_ms + limits_.max_age_ms < now_ms) {
    nonces_.erase(nonce_order_.front().nonce);
    nonce_order_.pop_front();
  }
}

}  // namespace roam::control
