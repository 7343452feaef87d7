// The roam pool file of roam-server --roam-pool (seed 002 section IV: which servers take
// turns, on which chain, from when). Pure parser of the file's text; one setting per line,
// `#` comments:
//
//   seed FILE            the chain's K_n: base64 of 32 bytes, mode 0600 (`roamctl genkey
//                        --out FILE` makes one); relative to the pool file's directory
//   length N             epochs in the chain (default 1048576 = 2^20), 1..2^32
//   start UNIX_SECONDS   when epoch 1 starts (the same on every member)
//   epoch SECONDS        the epoch unit (--roam-epoch overrides it)
//   m BITS               epochs last unit * (1 + MSB_m(H'(K_i))); 0..24 (default 0: fixed)
//   delta-ms MS          clock skew bound between members (default 100)
//   gamma-ms MS          network delay bound (default 200)
//   grant-epochs N       how far ahead a client's key reaches (default 3600)
//   update-seconds N     ROAM_UPDATE to every client channel this often (default 10;
//                        each channel also gets one, with the pool, when it is set up)
//   member IP:PORT [control IP:PORT]
//                        one per server, in the same order on every member ([IPv6]:PORT):
//                        its userspace address and service port, and the kernel TCP
//                        control port (--control) where the member that was active hands
//                        it the sessions at a roam (PROTOCOL.md 13.6). Without `control`
//                        that member takes no sessions at a roam.
//
// The member whose address is this server's userspace address is this server.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "stack/control/roam_update.hpp"

namespace roam {

struct RoamPoolFile {
  std::string seed_file;
  uint64_t length = uint64_t{1} << 20;
  std::optional<int64_t> start_ms;
  std::optional<uint32_t> unit_ms;
  uint8_t m = 0;
  int64_t delta_ms = 100;
  int64_t gamma_ms = 200;
  uint32_t grant_epochs = 3600;
  uint32_t update_seconds = 10;
  std::vector<control::RoamServer> members;
  std::vector<std::string> member_controls;  // one per member: IP:PORT, or "" (none given)
};

// An error names the line ("line 3: ...").
Result<RoamPoolFile, std::string> parse_roam_pool_file(std::string_view text);

}  // namespace roam
