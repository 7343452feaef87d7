// LinkRebinder: the client side of link rebinds (tun/link_rebind.hpp, PROTOCOL.md 3.8).
// Holds the link key each server gave this client on its control channel (LINK_KEY) and
// sends that server a fresh rebind datagram when asked: right after the key arrives, when
// the host's addresses change, and periodically (a NAT that rebinds while the host's
// address stays is healed within one period; the datagrams also keep the NAT mapping
// alive). The counter is the Unix time in microseconds, or one more than the last sent
// when the clock has not moved on (or went back): strictly increasing per key, also
// across a server that keeps the key while the client restarts its clock. Sending is the
// caller's (`send`: through the UDP link's socket to the server's endpoint). Loop thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>

#include "base/ip_address.hpp"
#include "tun/link_rebind.hpp"

namespace roam {

struct LinkRebinderCounters {
  uint64_t keys = 0;         // LINK_KEYs taken
  uint64_t sent = 0;         // rebind datagrams sent
  uint64_t send_failed = 0;  // no route to the server, or the socket refused
};

class LinkRebinder {
 public:
  // Sends `datagram` to the UDP endpoint of `server` (an inner address); false on failure.
  using SendFn = std::function<bool(const IpAddress& server, std::span<const uint8_t> datagram)>;
  explicit LinkRebinder(SendFn send) : send_(std::move(send)) {}

  // The server at inner address `server` bound `key` to our inner address `inner`
  // (replacing any key from it before: it starts a new counter sequence).
  void set_key(const IpAddress& server, const IpAddress& inner, const LinkKey& key);
  void forget(const IpAddress& server);
  // One rebind to each server with a key (or only to `server`). Returns how many went out.
  size_t send_all(uint64_t now_unix_us);
  size_t send_to(const IpAddress& server, uint64_t now_unix_us);
  size_t size() const { return servers_.size(); }
  const LinkRebinderCounters& counters() const { return counters_; }

 private:
  struct Entry {
    IpAddress server;
    IpAddress inner;
    LinkKey key{};
    uint64_t last_counter = 0;
  };
  bool send_one(Entry& entry, uint64_t now_unix_us);

  SendFn send_;
  std::map<std::string, Entry> servers_;
  LinkRebinderCounters counters_;
};

}  // namespace roam
