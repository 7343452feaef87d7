#include "tun/udp_roam_table.hpp"

#include <sodium.h>

#include <algorithm>
#include <cstring>

#include "tun/udp_peer_allowlist.hpp"

namespace roam {

namespace {

std::string address_key(const IpAddress& address) {
  std::string key(1, static_cast<char>(address.version));
  key.append(reinterpret_cast<const char*>(address.bytes.data()), address.size());
  return key;
}

// Address and port (an IPv4-mapped source as IPv4), so one endpoint has one key.
std::optional<std::string> endpoint_key(const sockaddr_storage& endpoint) {
  auto source = udp_source_of(endpoint);
  if (!source) return std::nullopt;
  std::string key = address_key(source->address);
  key.push_back(static_cast<char>(source->port >> 8));
  key.push_back(static_cast<char>(source->port & 0xff));
  return key;
}

}  // namespace

const char* rebind_verdict_name(RebindVerdict verdict) {
  switch (verdict) {
    case RebindVerdict::applied:
      return "applied";
    case RebindVerdict::unchanged:
      return "unchanged";
    case RebindVerdict::malformed:
      return "malformed";
    case RebindVerdict::unknown:
      return "unknown inner address";
    case RebindVerdict::forged:
      return "bad MAC";
    case RebindVerdict::replayed:
      return "old counter";
    case RebindVerdict::rate_limited:
      return "rate-limited";
  }
  return "?";
}

UdpRoamTable::UdpRoamTable(std::vector<IpPrefix> prefixes) : prefixes_(std::move(prefixes)) {}

bool UdpRoamTable::covers(const IpAddress& inner) const {
  return std::any_of(prefixes_.begin(), prefixes_.end(), [&](const IpPrefix& p) { return p.contains(inner); });
}

bool UdpRoamTable::set_key(const IpAddress& inner, const LinkKey& key) {
  if (!covers(inner)) return false;
  auto name = address_key(inner);
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    if (entries_.size() >= max_keys) return false;
    it = entries_.emplace(name, Entry{}).first;
  }
  // A new key starts a new counter sequence; the endpoint stays until a rebind under the
  // new key moves it (the client's traffic keeps flowing meanwhile).
  it->second.key = key;
  it->second.last_counter = 0;
  return true;
}

std::optional<LinkKey> UdpRoamTable::issue_key(const IpAddress& inner) {
  LinkKey key{};
  randombytes_buf(key.data(), key.size());
  if (!set_key(inner, key)) return std::nullopt;
  ++counters_.keys_issued;
  return key;
}

bool UdpRoamTable::admit(const std::string& source, uint64_t now_ms) {
  auto it = buckets_.find(source);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_sources) {
      // Forget sources quiet for a while; if all are busy, new ones wait (bounded memory).
      std::erase_if(buckets_, [&](const auto& b) { return b.second.last_ms + 10'000 < now_ms; });
      if (buckets_.size() >= max_sources) return false;
    }
    it = buckets_.emplace(source, Bucket{source_burst, now_ms}).first;
  }
  Bucket& bucket = it->second;
  if (now_ms > bucket.last_ms) {
    bucket.tokens = std::min(source_burst, bucket.tokens + static_cast<double>(now_ms - bucket.last_ms) *
                                                                source_rate_per_s / 1000.0);
    bucket.last_ms = now_ms;
  }
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

void UdpRoamTable::unbind(Entry& entry) {
  if (!entry.bound) return;
  if (auto key = endpoint_key(entry.endpoint)) by_endpoint_.erase(*key);
  entry.bound = false;
}

RebindVerdict UdpRoamTable::on_rebind(std::span<const uint8_t> datagram, const sockaddr_storage& source,
                                      uint64_t now_ms) {
  ++counters_.rebinds;
  auto from = udp_source_of(source);
  auto source_name = endpoint_key(source);
  if (!from || !source_name) {
    ++counters_.rebinds_malformed;
    return RebindVerdict::malformed;
  }
  if (!admit(address_key(from->address), now_ms)) {
    ++counters_.rebinds_rate_limited;
    return RebindVerdict::rate_limited;
  }
  auto rebind = decode_link_rebind(datagram);
  if (!rebind) {
    ++counters_.rebinds_malformed;
    return RebindVerdict::malformed;
  }
  auto it = entries_.find(address_key(rebind->inner));
  if (it == entries_.end()) {
    ++counters_.rebinds_unknown;
    return RebindVerdict::unknown;
  }
  Entry& entry = it->second;
  if (!verify_link_rebind(datagram, entry.key)) {
    ++counters_.rebinds_forged;
    return RebindVerdict::forged;
  }
  if (rebind->counter <= entry.last_counter) {
    ++counters_.rebinds_replayed;
    return RebindVerdict::replayed;
  }
  entry.last_counter = rebind->counter;
  if (entry.bound && endpoint_key(entry.endpoint) == source_name) {
    ++counters_.rebinds_unchanged;
    return RebindVerdict::unchanged;
  }
  unbind(entry);
  // Another inner address bound to this endpoint (two clients behind one NAT whose
  // mappings were swapped) loses it: the endpoint speaks for the newest prover only.
  if (auto previous = by_endpoint_.find(*source_name); previous != by_endpoint_.end()) {
    auto other = entries_.find(previous->second);
    if (other != entries_.end()) other->second.bound = false;
    by_endpoint_.erase(previous);
  }
  entry.endpoint = source;
  entry.bound = true;
  by_endpoint_[*source_name] = it->first;
  ++counters_.rebinds_applied;
  return RebindVerdict::applied;
}

const sockaddr_storage* UdpRoamTable::endpoint_for(const IpAddress& inner) const {
  if (entries_.empty()) return nullptr;
  auto it = entries_.find(address_key(inner));
  if (it == entries_.end() || !it->second.bound) return nullptr;
  return &it->second.endpoint;
}

bool UdpRoamTable::allows(const sockaddr_storage& source, std::span<const uint8_t> packet) {
  if (by_endpoint_.empty()) return false;
  auto name = endpoint_key(source);
  if (!name) return false;
  auto it = by_endpoint_.find(*name);
  if (it == by_endpoint_.end()) return false;
  auto inner = IpAddress::source_of(packet);
  if (!inner) {
    ++counters_.rx_wrong_inner;
    return false;
  }
  auto inner_name = address_key(*inner);
  if (inner_name == it->second) return true;
  // A roaming client whose inner address changed (roam-client --addr-file) must reach the
  // channel port from its new address to get that address's key: an address in the
  // prefixes that no endpoint has proved yet is taken too (as from a static peer).
  if (covers(*inner)) {
    auto entry = entries_.find(inner_name);
    if (entry == entries_.end() || !entry->second.bound) return true;
  }
  ++counters_.rx_wrong_inner;
  return false;
}

std::string UdpRoamTable::describe() const {
  std::string text;
  for (const auto& prefix : prefixes_) {
    if (!text.empty()) text += ", ";
    text += prefix.address.to_string() + "/" + std::to_string(prefix.length);
  }
  return text;
}

}  // namespace roam
