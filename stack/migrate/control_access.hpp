// Who may ask what on a server's control port (docs/SECURITY.md). Every peer there has
// completed a Noise XX handshake (crypto/noise_stream.hpp), so its static key is known:
//   operator     its key is in the server's --operators file: may start moves and read
//                status (roamctl)
//   pool member  showed a pool certificate for its key, signed by this server's pool:
//                may hand sessions over (server-to-server transfer) and ask for this
//                server's carrier addresses (address_request, before a transfer)
//   anyone else  may read status only when the server runs with --status-open
// Pure; any thread.
#pragma once

#include <cstdint>

#include "stack/migrate/control_frame.hpp"

namespace roam::migrate {

struct ControlPeer {
  bool operator_key = false;
  bool pool_member = false;
};

enum class ControlAccess : uint8_t {
  allowed,
  needs_operator,  // a move (or status, without --status-open) from a key not in --operators
  needs_member,    // a session transfer from a key without this pool's certificate
  not_a_request,   // a frame no peer sends to a control port (reply, session_result)
};
const char* control_access_text(ControlAccess access);

ControlAccess control_access(FrameType type, const ControlPeer& peer, bool status_open);

}  // namespace roam::migrate
