// MovableSession: a server session whose connection can move to another server process
// (DESIGN.md section 4, "A server moves"). The server's session table owns sessions; the
// exporter freezes, captures and releases them, the importer rebuilds them from a snapshot
// through the SessionKinds registered for this host. Loop thread only.
//
// A session's moving state is two byte strings that travel in the snapshot:
//   received   bytes lwIP delivered and acknowledged that the app has not consumed yet
//              (they hold the receive window shut; the new host's app consumes them)
//   app_state  the app's own encoding (for `files`: the file name and the offset reached)
#pragma once

#include <cstdint>
#include <functional>
#include <map>
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

// Rebuilds one session of a kind around an imported pcb (callbacks not yet set; the
// session installs them). `received` bytes are delivered to the app first. Returns
// nullptr with `error` set when the app state is malformed or names something this host
// cannot serve.
using SessionFactory = std::function<std::unique_ptr<MovableSession>(
    tcp_pcb* pcb, std::vector<uint8_t> received, const std::vector<uint8_t>& app_state,
    MovableSession::FinishedFn on_finished, std::string& error)>;

// The session kinds this host can rebuild, by name. The engine knows no app: whoever
// composes a node (apps/, a test) registers the kinds it serves.
class SessionKinds {
 public:
  void add(std::string kind, SessionFactory factory) { factories_[std::move(kind)] = std::move(factory); }
  bool knows(const std::string& kind) const { return factories_.count(kind) != 0; }
  // nullptr with `error` set for an unknown kind, a missing pcb or what the factory refused.
  std::unique_ptr<MovableSession> make(const std::string& kind, tcp_pcb* pcb, std::vector<uint8_t> received,
                                       const std::vector<uint8_t>& app_state, MovableSession::FinishedFn on_finished,
                                       std::string& error) const {
    auto found = factories_.find(kind);
    if (found == factories_.end()) {
      error = "unknown session kind '" + kind + "'";
      return nullptr;
    }
    if (pcb == nullptr) {
      error = "no pcb to rebuild a session on";
      return nullptr;
    }
    return found->second(pcb, std::move(received), app_state, std::move(on_finished), error);
  }

 private:
  std::map<std::string, SessionFactory> factories_;
};

}  // namespace roam
