#include "tun/link_rebinder.hpp"

#include <algorithm>

namespace roam {

void LinkRebinder::set_key(const IpAddress& server, const IpAddress& inner, const LinkKey& key) {
  ++counters_.keys;
  Entry& entry = servers_[server.to_string()];
  entry.server = server;
  entry.inner = inner;
  entry.key = key;
  entry.last_counter = 0;
}

void LinkRebinder::forget(const IpAddress& server) {
  servers_.erase(server.to_string());
}

bool LinkRebinder::send_one(Entry& entry, uint64_t now_unix_us) {
  uint64_t counter = std::max(entry.last_counter + 1, now_unix_us);
  entry.last_counter = counter;
  auto datagram = encode_link_rebind(entry.inner, counter, entry.key);
  if (!send_ || !send_(entry.server, datagram)) {
    ++counters_.send_failed;
    return false;
  }
  ++counters_.sent;
  return true;
}

size_t LinkRebinder::send_all(uint64_t now_unix_us) {
  size_t sent = 0;
  for (auto& [name, entry] : servers_)
    if (send_one(entry, now_unix_us)) ++sent;
  return sent;
}

size_t LinkRebinder::send_to(const IpAddress& server, uint64_t now_unix_us) {
  auto it = servers_.find(server.to_string());
  if (it == servers_.end()) return 0;
  return send_one(it->second, now_unix_us) ? 1 : 0;
}

}  // namespace roam
