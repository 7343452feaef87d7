#include "apps/builtin_sessions.hpp"

#include "apps/echo_app.hpp"
#include "apps/files_app.hpp"

namespace roam {

SessionKinds builtin_session_kinds(const SessionContext& context) {
  SessionKinds kinds;
  Node* node = context.node;
  for (auto mode : {EchoSession::Mode::echo, EchoSession::Mode::discard}) {
    kinds.add_single_leg(mode == EchoSession::Mode::echo ? "echo" : "discard",
              [node, mode](tcp_pcb* pcb, std::vector<uint8_t> received, const std::vector<uint8_t>& app_state,
                           MovableSession::FinishedFn on_finished, std::string& error) {
                return EchoSession::import(*node, mode, pcb, std::move(received), app_state, std::move(on_finished),
                                           error);
              });
  }
  if (!context.files_root.empty()) {
    std::string root = context.files_root;
    kinds.add_single_leg("files", [node, root](tcp_pcb* pcb, std::vector<uint8_t> received,
                                    const std::vector<uint8_t>& app_state, MovableSession::FinishedFn on_finished,
                                    std::string& error) {
      return FilesSession::import(*node, root, pcb, std::move(received), app_state, std::move(on_finished), error);
    });
  }
  return kinds;
}

std::unique_ptr<MovableSession> make_movable_session(const std::string& kind, const SessionContext& context,
                                                     tcp_pcb* pcb, std::vector<uint8_t> received,
                                                     const std::vector<uint8_t>& app_state,
                                                     MovableSession::FinishedFn on_finished, std::string& error) {
  if (context.node == nullptr) {
    error = "no node to rebuild a session on";
    return nullptr;
  }
  if (kind == "files" && context.files_root.empty()) {
    error = "files: this server has no file root";
    return nullptr;
  }
  std::vector<ImportedLeg> legs(1);
  legs[0] = ImportedLeg{pcb, LegRole::client, std::move(received), app_state};
  return builtin_session_kinds(context).make(kind, std::move(legs), std::move(on_finished), error);
}

}  // namespace roam
