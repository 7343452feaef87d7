// MovableSession: a server session whose connection can move to another server process
// (DESIGN.md section 4, "A server moves"). The server's session table owns sessions; the
// exporter freezes, captures and releases them, the importer rebuilds them from a snapshot
// through make_movable_session. Loop thread only.
//
// A session's moving state is two byte strings that travel in the snapshot:
//   received   bytes lwIP delivered and acknowledged that the app has not consumed yet
//              (they hold the receive window shut; the new host's app consumes them)
//   app_state  the app's own encoding (for `files`: the file name and the offset reached)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "stack/lwip.hpp"
#include "stack/node.hpp"

namespace roam {

class MovableSession {
 public:
  // Called (deferred) once the session ended on its own; the owner then destroys it.
  using FinishedFn = std::function<void(MovableSession*)>;

  virtual ~MovableSession() = default;

  // "echo", "discard" or "files": names the app that must rebuild it on the new host.
  virtual const char* kind() const = 0;
  // The connection's pcb, or nullptr once it is gone.
  virtual tcp_pcb* pcb() const = 0;
  // Whether it can move now (established, not closing, nothing half-done in the app).
  virtual bool movable() const = 0;
  // Stops all output and app activity; lwIP callbacks may still arrive for data already
  // queued and must be held, not acted on. Undone by thaw().
  virtual void freeze() = 0;
  virtual void thaw() = 0;
  virtual std::vector<uint8_t> received_unconsumed() const = 0;
  virtual std::vector<uint8_t> app_state() const = 0;
  // Gives up the pcb without closing it (the connection now lives elsewhere). The session
  // is dead afterwards and only waits to be destroyed.
  virtual tcp_pcb* release_pcb() = 0;
  // Closes gracefully (server shutdown).
  virtual void close() = 0;
};

// What a server needs to rebuild sessions of every kind.
struct SessionContext {
  Node* node = nullptr;
  std::string files_root;  // `files`: directory the file names are relative to
};

// Rebuilds a session of `kind` around an imported pcb (callbacks not yet set; the session
// installs them). `received` bytes are delivered to the app first. Returns nullptr with
// `error` set when the kind is unknown or the app state is malformed or names a file that
// cannot be opened here.
std::unique_ptr<MovableSession> make_movable_session(const std::string& kind, const SessionContext& context,
                                                     tcp_pcb* pcb, std::vector<uint8_t> received,
                                                     const std::vector<uint8_t>& app_state,
                                                     MovableSession::FinishedFn on_finished, std::string& error);

}  // namespace roam
