// The built-in services that can move (echo, discard, files) as session kinds the move
// engine can rebuild on this host. Loop thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "stack/migrate/movable_session.hpp"
#include "stack/node.hpp"

namespace roam {

// What a server needs to rebuild the built-in sessions.
struct SessionContext {
  Node* node = nullptr;
  std::string files_root;  // `files`: directory the file names are relative to ("": not served)
};

// echo and discard always; files when the context has a root.
SessionKinds builtin_session_kinds(const SessionContext& context);

// One session of a built-in kind (tests; the engine uses the registry).
std::unique_ptr<MovableSession> make_movable_session(const std::string& kind, const SessionContext& context,
                                                     tcp_pcb* pcb, std::vector<uint8_t> received,
                                                     const std::vector<uint8_t>& app_state,
                                                     MovableSession::FinishedFn on_finished, std::string& error);

}  // namespace roam
