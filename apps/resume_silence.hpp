// When roam-client takes a connection's server for dead (PROTOCOL.md 14.5, "Silence"):
// its silence is counted from the last segment received, or from a later moment that
// explains it (the client's own window last seen closed, the connection last resumed or
// last seen in its NAT handover). A server that has sent its FIN has ended its output:
// it owes the client nothing more to read, and its silence, however long, is the normal
// end of a download whose tail the client's app has not read yet, not a death. (Seen in
// netns_roaming_takeover: the paced reader kept over a second of the file in the client's
// buffers after the server's FIN; the client then resumed a finished connection, which
// the next member refused with reason 34: the client's rcv_nxt counts the FIN, one past
// the file.) Pure arithmetic on facts the resumer reads off the client's pcb.
#pragma once

#include <cstdint>
#include <optional>

namespace roam {

struct ServerSilence {
  bool server_finished = false;    // the server's FIN arrived (the client's end is in CLOSE_WAIT)
  uint64_t since_segment_ms = 0;   // since the last segment received on the connection
  std::optional<uint64_t> since_window_closed_ms;  // since the client's window was last seen closed
  std::optional<uint64_t> since_resumed_ms;        // since it was last resumed or in its handover
};

// How long the server has been silent in the sense that counts; nullopt: its silence says
// nothing (it finished), and the connection is not resumed.
std::optional<uint64_t> server_silence_ms(const ServerSilence& view);

}  // namespace roam
