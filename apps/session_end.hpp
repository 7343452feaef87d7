// SessionEnd: the end-of-life rules every carrier session shares (echo, files), in one
// place. Owned by the session; loop thread only.
//
//  - finish(): close (FIN) or reset the carrier on the next loop turn, never inside one of
//    its own lwIP callbacks, then tell the owner, once.
//  - release(): the connection moved away; the owner is not told, the session is dead.
//  - resume_later(): an imported session starts frozen and resumes on the next loop turn,
//    unless frozen again or released meanwhile.
// Deferred tasks check a lifetime token first: the owner may destroy the session before
// they run (server shutdown), and then the carrier's destructor already closed the pcb.
#pragma once

#include <functional>
#include <memory>

#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"

namespace roam {

class SessionEnd {
 public:
  SessionEnd(Node& node, std::function<void()> notify_owner) : node_(node), notify_owner_(std::move(notify_owner)) {}
  SessionEnd(const SessionEnd&) = delete;
  SessionEnd& operator=(const SessionEnd&) = delete;

  bool finishing() const { return finishing_; }

  void finish(TcpConnection& carrier, bool reset) {
    if (finishing_) return;
    finishing_ = true;
    node_.defer([this, &carrier, reset, lifetime = std::weak_ptr<bool>(lifetime_)] {
      if (lifetime.expired()) return;
      if (reset)
        carrier.abort();
      else
        carrier.close();
      if (auto notify = std::exchange(notify_owner_, nullptr)) notify();
    });
    node_.kick();
  }

  tcp_pcb* release(TcpConnection& carrier) {
    finishing_ = true;
    resume_pending_ = false;
    notify_owner_ = nullptr;
    return carrier.release();
  }

  void resume_later(std::function<void()> resume) {
    resume_pending_ = true;
    node_.defer([this, resume = std::move(resume), lifetime = std::weak_ptr<bool>(lifetime_)] {
      if (lifetime.expired() || !resume_pending_) return;
      resume_pending_ = false;
      resume();
    });
    node_.kick();
  }
  // freeze(): a pending resume must not undo it; thaw() resumes instead.
  void cancel_resume() { resume_pending_ = false; }

 private:
  Node& node_;
  std::function<void()> notify_owner_;
  bool finishing_ = false;
  bool resume_pending_ = false;
  std::shared_ptr<bool> lifetime_ = std::make_shared<bool>(true);
};

}  // namespace roam
