// UdpRoamTable: the server side of link rebinds (tun/link_rebind.hpp, docs/PROTOCOL.md
// 3.8). For inner addresses inside the --udp-roam prefixes it holds one link key each
// (issued when the client's control channel is up, sent only inside that channel), the
// highest counter accepted under it, and the endpoint the last valid rebind came from.
// The UdpLink asks it, before its static allowlist, what to do with a rebind datagram,
// sends packets for a roamed inner address to its endpoint (ahead of the static routes),
// and takes IP packets from a roamed endpoint only when their inner source is the inner
// address bound to it, or an address of the prefixes no endpoint is bound to (a client
// whose inner address changed reaches the channel port for its new key): an endpoint
// never speaks for an address another endpoint proved.
//
// A rebind that is malformed, names an inner address with no key, fails the MAC, or
// repeats or goes back on the counter is dropped, counted, and changes nothing. Work per
// source address is rate-limited before the MAC is computed. The previous endpoint stops
// being accepted at once: after a NAT rebind its old mapping may be handed to another
// host, and whatever was in flight on the old path TCP retransmits on the new one.
// Bounded: at most max_keys keys and max_sources rate-limit buckets. Pure apart from the
// random key; the caller passes the loop's time. Loop thread only.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/ip_address.hpp"
#include "tun/link_rebind.hpp"

namespace roam {

struct UdpRoamCounters {
  uint64_t keys_issued = 0;
  uint64_t rebinds = 0;            // rebind datagrams received (all outcomes)
  uint64_t rebinds_applied = 0;    // moved an inner address to a new endpoint
  uint64_t rebinds_unchanged = 0;  // valid, from the endpoint already bound (keepalives)
  uint64_t rebinds_malformed = 0;  // truncated, wrong length or format
  uint64_t rebinds_unknown = 0;    // no key for that inner address
  uint64_t rebinds_forged = 0;     // wrong MAC
  uint64_t rebinds_replayed = 0;   // counter not above the last accepted
  uint64_t rebinds_rate_limited = 0;
  uint64_t rx_wrong_inner = 0;  // IP packets from a roamed endpoint with another inner source
};

enum class RebindVerdict : uint8_t { applied, unchanged, malformed, unknown, forged, replayed, rate_limited };
const char* rebind_verdict_name(RebindVerdict verdict);

class UdpRoamTable {
 public:
  static constexpr size_t max_keys = 65536;
  static constexpr size_t max_sources = 4096;
  // Per source address: a burst of this many verifications, then this many per second.
  static constexpr double source_burst = 16;
  static constexpr double source_rate_per_s = 8;

  explicit UdpRoamTable(std::vector<IpPrefix> prefixes);

  bool covers(const IpAddress& inner) const;
  // A fresh random key for `inner` (replacing any older one, whose rebinds then fail):
  // nullopt when `inner` is outside the prefixes or the table is full.
  std::optional<LinkKey> issue_key(const IpAddress& inner);
  // Tests: installs a known key.
  bool set_key(const IpAddress& inner, const LinkKey& key);

  RebindVerdict on_rebind(std::span<const uint8_t> datagram, const sockaddr_storage& source, uint64_t now_ms);

  // Where packets for `inner` go now (a valid rebind's source), or nullptr.
  const sockaddr_storage* endpoint_for(const IpAddress& inner) const;
  // Whether an IP packet from `source` is from a roamed endpoint and has the inner source
  // address bound to it, or an unbound one of the prefixes (counts rx_wrong_inner when the
  // endpoint is roamed but the source is neither).
  bool allows(const sockaddr_storage& source, std::span<const uint8_t> packet);
  bool empty() const { return entries_.empty(); }

  const UdpRoamCounters& counters() const { return counters_; }
  std::string describe() const;  // the prefixes, for the link's start-up line

 private:
  struct Entry {
    LinkKey key{};
    uint64_t last_counter = 0;
    bool bound = false;
    sockaddr_storage endpoint{};
  };
  struct Bucket {
    double tokens = source_burst;
    uint64_t last_ms = 0;
  };
  bool admit(const std::string& source, uint64_t now_ms);
  void unbind(Entry& entry);

  std::vector<IpPrefix> prefixes_;
  std::unordered_map<std::string, Entry> entries_;           // by inner address
  std::unordered_map<std::string, std::string> by_endpoint_;  // endpoint -> inner address
  std::unordered_map<std::string, Bucket> buckets_;          // by source address
  UdpRoamCounters counters_;
};

}  // namespace roam
