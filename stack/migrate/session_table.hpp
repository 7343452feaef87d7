// SessionTable: a server's sessions as the move engine sees them. The host that composes
// a node (roam-server, a proxy, a test) implements it; the engine asks it for candidates,
// hands it imported sessions and tells it which ones left. Loop thread only.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "stack/migrate/movable_session.hpp"

namespace roam {

class SessionTable {
 public:
  virtual ~SessionTable() = default;
  virtual std::vector<MovableSession*> sessions() = 0;
  // How many there are, without building the list (asked on timers).
  virtual size_t session_count() { return sessions().size(); }
  // Removes a session that moved away; the table destroys it (deferred).
  virtual void drop(MovableSession* session) = 0;
  // Takes ownership of an imported session.
  virtual void adopt(std::unique_ptr<MovableSession> session) = 0;
  virtual MovableSession::FinishedFn finished_callback() = 0;
  // The kinds of session this host can rebuild from a snapshot.
  virtual const SessionKinds& kinds() const = 0;
};

}  // namespace roam
