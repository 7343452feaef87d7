// Rebuilding a connection from a client-held checkpoint (PROTOCOL.md 14.5): the checkpoint
// says how the connection was when it was sealed, the client says where the sequence space
// is now (what it received, what it sent, what was acknowledged); this aligns the one to the
// other. The checkpoint holds no queued bytes, so the new host's queues start empty: the
// client retransmits what it sent beyond its acknowledged point, and the app regenerates
// what the client has not received from its own state, moved by `send_shift` bytes. Pure,
// any thread.
#pragma once

#include <cstdint>
#include <string>

#include "base/result.hpp"
#include "stack/wire/connection_snapshot.hpp"

namespace roam::migrate {

// The client's view of the connection, in the connection's own sequence numbers.
struct ClientSequenceView {
  uint32_t rcv_nxt = 0;  // the next byte it expects from the server
  uint32_t snd_una = 0;  // its oldest byte the server has not acknowledged
  uint32_t snd_nxt = 0;  // its next byte to send
};

struct AlignedResume {
  wire::ConnectionSnapshot snapshot;  // queues empty, sequence numbers the client's
  // Bytes from the checkpoint's send point (the sequence number of the app's next output
  // byte when sealed) to the client's rcv_nxt: the app moves its output position by this
  // much (negative: the client has not received everything the checkpoint counted as
  // handed to TCP).
  int64_t send_shift = 0;
  // Bytes from the checkpoint's rcv_nxt to the client's snd_una (negative: the client will
  // retransmit input the app had already consumed; the app must be able to ignore it).
  int64_t receive_shift = 0;
};

// A shift beyond this is not a view of the same connection: refused.
inline constexpr int64_t max_resume_shift = int64_t{1} << 30;

// `checkpointed` is a state-only snapshot (no unacked, unsent or received bytes,
// snd_una = snd_nxt = the sequence number of the app's next output byte). The result
// keeps its addresses, ports, id, options, windows and timers, with the sequence numbers
// moved to the client's view and cwnd restarted at most at 4 segments (a new path).
Result<AlignedResume, std::string> align_to_client(const wire::ConnectionSnapshot& checkpointed,
                                                   const ClientSequenceView& view);

}  // namespace roam::migrate
