#include "apps/movable_session.hpp"

#include "apps/echo_app.hpp"
#include "apps/files_app.hpp"

namespace roam {

std::unique_ptr<MovableSession> make_movable_session(const std::string& kind, const SessionContext& context,
                                                     tcp_pcb* pcb, std::vector<uint8_t> received,
                                                     const std::vector<uint8_t>& app_state,
                                                     MovableSession::FinishedFn on_finished, std::string& error) {
  if (context.node == nullptr || pcb == nullptr) {
    error = "no node or no pcb to rebuild a session on";
    return nullptr;
  }
  if (kind == "echo" || kind == "discard") {
    auto mode = kind == "echo" ? EchoSession::Mode::echo : EchoSession::Mode::discard;
    return EchoSession::import(*context.node, mode, pcb, std::move(received), app_state, std::move(on_finished), error);
  }
  if (kind == "files") {
    if (context.files_root.empty()) {
      error = "files: this server has no file root";
      return nullptr;
    }
    return FilesSession::import(*context.node, context.files_root, pcb, std::move(received), app_state,
                                std::move(on_finished), error);
  }
  error = "unknown session kind '" + kind + "'";
  return nullptr;
}

}  // namespace roam
