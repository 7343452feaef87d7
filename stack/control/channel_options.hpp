// ChannelOptions: how a node runs its control channels (the lwIP port, this host's
// identity key and name, segment MAC and handover, and for a client how server keys are
// trusted and how old an Address Change Message may be). Filled by the apps' option
// parsing (apps/channel_cli.hpp) or by code; read at start-up only.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "crypto/identity_key.hpp"
#include "crypto/known_hosts.hpp"

namespace roam {

inline constexpr uint16_t default_channel_port = 7001;

// How many channels a server lets sit before their Noise handshake completes, and for how
// long. A genuine client finishes XX in one and a half round trips, so seconds are ample;
// the caps bound what anyone who can reach the port makes the server hold (one lwIP pcb and
// one handshake state each), per carrier address and overall. Refusals are counted.
struct ChannelLimits {
  uint64_t handshake_timeout_ms = 10'000;
  size_t max_half_open = 256;
  // 64, not fewer: clients behind one NAT open their channels together (after a server
  // moved, or when a flood's first-SYN drop releases their connects at the same second);
  // with 16, netns_syn_flood's 20 concurrent handshakes from one address lost 4.
  size_t max_half_open_per_source = 64;
  bool require_owner_proof = false;   // refuse registrations of connections without an owner
  bool client_moves = true;           // take clients' Address Change Messages (seed 003)
  size_t max_registered_ids = 65536;  // per channel
  size_t max_held_ids = 4096;         // per channel: ids not (yet) known here
  size_t max_refusals = 1024;         // per channel, then it is closed
};

struct ChannelOptions {
  uint16_t port = default_channel_port;
  std::string key_file;      // "": a fresh key for this run only
  std::string host_id;       // "": the carrier address
  bool segment_mac = false;  // sign and check carrier segments where the peer does too
  bool handover = true;      // --handover always (default) | off
  ChannelLimits limits;      // server only
  // Client only.
  // What this client shows in its HELLO: its pool membership certificate (a proxy's,
  // so that another member of its pool may later move its connections; empty: none).
  std::vector<uint8_t> hello_credential;
  std::string known_hosts_file;  // "": remembered for this run only
  bool pinned = false;           // refuse servers not in the known-hosts file
  // Pools whose members this client trusts (--trust-pool); empty: whatever pool the
  // server it first connects to proves (an ACM then moves it only within that pool).
  std::vector<std::array<uint8_t, 32>> trusted_pools;
  uint64_t acm_max_age_ms = 30'000;
  // Offer capability_link_rebind in the HELLO (a client on a UDP link: it can send link
  // rebinds, so a server whose link roams gives it a LINK_KEY). Set by code, not an option.
  bool link_rebind = false;
  uint64_t known_hosts_max_idle_s = 90ull * 24 * 3600;
};

// The identity key named by --key, or a fresh one (logged as such). Throws ConfigError.
std::unique_ptr<crypto::IdentityKey> load_identity(const ChannelOptions& options);

}  // namespace roam
