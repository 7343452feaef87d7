// What `roamctl show` prints about a server (like `wg show`): its identity and pool, its
// control channels, its sessions with their 4-tuples, age, bytes and last move, and its
// counters. The server collects a ServerShow (MigrationService::show) and renders it, as
// text or as one JSON object, with these pure functions; roamctl prints what it gets.
// Any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "stack/flow_key.hpp"

namespace roam::migrate {

struct ShowLeg {
  std::string role;  // "client" or "origin"
  FlowKey flow;      // local = this server
  // Bytes each way from the sequence numbers against the ISNs in the connection id (so
  // they survive moves), modulo 2^32.
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;  // acknowledged by the peer
};

struct ShowSession {
  uint64_t id = 0;  // the first leg's connection id
  std::string kind;
  std::vector<ShowLeg> legs;
  std::optional<uint64_t> age_ms;  // since accepted here, or since it arrived by a move
  bool movable = false;
  std::string stays;  // why not, when not movable (the migrate summary's label)
  // The move that brought it here: how long ago, and its changeover (import to the
  // client's first packet on the new path), once the client arrived.
  std::optional<uint64_t> moved_in_ago_ms;
  std::optional<uint64_t> changeover_ms;
};

struct ShowChannel {
  std::string key;  // base64 static key; empty while the handshake runs
  FlowKey flow;     // remote: the client's carrier address and port, as seen here
  uint64_t age_ms = 0;
  size_t connections = 0;
};

struct ServerShow {
  std::string key;   // base64 identity key
  std::string pool;  // base64 pool key, empty without --pool-cert
  std::string address;
  std::string address6;  // empty without one
  std::vector<ShowChannel> channels;
  std::vector<ShowSession> sessions;
  size_t sessions_total = 0;  // sessions listed at most max_listed; this counts them all
  std::vector<std::pair<std::string, uint64_t>> counters;
  static constexpr size_t max_listed = 1000;
};

// One JSON string, quotes included.
std::string json_string(std::string_view text);
std::string render_show_json(const ServerShow& show);
// Indented text, one block per channel and session, then the nonzero counters.
std::string render_show_text(const ServerShow& show);

}  // namespace roam::migrate
