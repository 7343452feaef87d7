// KnownHosts: the peers this host has met and their static public keys (seed 003 section
// 3.1's key table, like ssh's known_hosts): peer id, public key, first seen, last seen.
// Trust on first use by default: an unknown peer's key is learned; `pinned` mode refuses
// peers that are not already listed. A listed peer presenting another key is always
// refused. Entries unused for longer than a configured time are pruned. The text form is
// pure (parse/format); load/save do the file I/O (0600, atomic replace). Loop thread only.
//
// File format, one peer per line, '#' comments and blank lines ignored:
//   PEER_ID BASE64_PUBLIC_KEY FIRST_SEEN LAST_SEEN      (times: Unix seconds)
// PEER_ID: 1-64 characters of [A-Za-z0-9._:-] (a name, or an address).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "crypto/identity_key.hpp"
#include "base/result.hpp"

namespace roam::crypto {

struct KnownHost {
  PublicKey key{};
  uint64_t first_seen = 0;
  uint64_t last_seen = 0;
};

enum class TrustPolicy : uint8_t { trust_on_first_use, pinned };

enum class TrustVerdict : uint8_t {
  known,         // listed with this key: trusted (last_seen updated)
  learned,       // first use: added and trusted (trust_on_first_use only)
  key_mismatch,  // listed with ANOTHER key: refused
  unknown,       // not listed and the policy is pinned: refused
  bad_peer_id,   // the id is not a valid peer id: refused
};
const char* trust_verdict_name(TrustVerdict verdict);
inline bool trusted(TrustVerdict v) {
  return v == TrustVerdict::known || v == TrustVerdict::learned;
}

struct KnownHostsParseError {
  size_t line = 0;  // 1-based
  std::string reason;
};

bool valid_peer_id(std::string_view id);

class KnownHosts {
 public:
  // Checks a peer's key under `policy` at time `now` and records what it learned.
  TrustVerdict check(std::string_view peer_id, const PublicKey& key, uint64_t now, TrustPolicy policy);
  // Adds or replaces an entry (operator pinning a key).
  bool pin(std::string_view peer_id, const PublicKey& key, uint64_t now);
  bool forget(std::string_view peer_id) { return hosts_.erase(std::string(peer_id)) != 0; }
  // Removes entries not seen for more than max_idle seconds; returns how many.
  size_t prune(uint64_t now, uint64_t max_idle);

  const std::map<std::string, KnownHost, std::less<>>& hosts() const { return hosts_; }

  static Result<KnownHosts, KnownHostsParseError> parse(std::string_view text);
  std::string format() const;

  // File forms. A missing file is an empty store.
  static Result<KnownHosts, KnownHostsParseError> load(const std::string& path);
  // Writes PATH.tmp (0600) and renames it over PATH. Returns an error text on failure.
  Result<Ok, std::string> save(const std::string& path) const;

 private:
  std::map<std::string, KnownHost, std::less<>> hosts_;
};

}  // namespace roam::crypto
