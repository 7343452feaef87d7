// MovableSession: a server session whose connections can move to another server process
// (DESIGN.md section 4, "A server moves"). The server's session table owns sessions; the
// exporter freezes, captures and releases them, the importer rebuilds them from a snapshot
// per leg through the SessionKinds registered for this host. Loop thread only.
//
// A session owns one or more *legs*, each one TCP connection (pcb) with a role: a client
// leg was accepted from a client (echo, files: the only leg); a proxy also owns an origin
// leg, a carrier it opened as a client to its origin server (DESIGN.md section 2). Every
// leg moves with the session, all or none. Most sessions have one client leg and derive
// from SingleLegSession.
//
// Each leg's moving state is two byte strings that travel in its snapshot:
//   received   bytes lwIP delivered and acknowledged that the app has not consumed yet
//              (they hold the receive window shut; the new host's app consumes them)
//   app_state  the app's own encoding (for `files`: the file name and the offset reached);
//              a multi-leg session keeps its session-wide state in its first leg's
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stack/lwip.hpp"
#include "stack/migrate/control_frame.hpp"
#include "stack/node.hpp"

namespace roam {

using migrate::LegRole;

// Why a session cannot move now: a short label the move summary counts by ("ending",
// "relay") and a sentence for the log and `roamctl status`.
struct StayReason {
  std::string label;
  std::string text;
};

// One connection of a session, as the engine sees it.
struct SessionLeg {
  tcp_pcb* pcb = nullptr;  // nullptr once the connection is gone
  LegRole role = LegRole::client;
};

// What a client-held checkpoint of a session carries (PROTOCOL.md 14): the connection its
// client talks to, and the app state that regenerates the session's output on resume.
struct CheckpointSource {
  tcp_pcb* pcb = nullptr;
  std::vector<uint8_t> app_state;
};

class MovableSession {
 public:
  // Called (deferred) once the session ended on its own; the owner then destroys it.
  using FinishedFn = std::function<void(MovableSession*)>;

  virtual ~MovableSession() = default;

  // "echo", "discard" or "files": names the app that must rebuild it on the new host.
  virtual const char* kind() const = 0;
  // Its legs, at least one, always in the same order: the order they travel in and are
  // handed to the session kind's factory again on the new host.
  virtual std::vector<SessionLeg> legs() const = 0;
  // Whether it can move now (established, not closing, nothing half-done in the app).
  virtual bool movable() const = 0;
  // Why, when movable() is false. Most sessions refuse only while they end; a kind that
  // can never move (a relay to a kernel socket) names its own reason.
  virtual StayReason stay_reason() const { return {"ending", "its session is ending"}; }
  // Stops all output and app activity on every leg; lwIP callbacks may still arrive for
  // data already queued and must be held, not acted on. Undone by thaw().
  virtual void freeze() = 0;
  virtual void thaw() = 0;
  // Pre-copy's last round (PROTOCOL.md 4.3, "The held round"): the app stops queueing new
  // bytes on its legs while the connections keep running (lwIP still sends, retransmits
  // and acknowledges what is queued), so the freeze that follows has no new bytes to carry.
  // Undone by release_output(). The default does nothing: a session whose output follows
  // its input (echo, a relay) would only turn the held bytes into unread input, which
  // travels at the freeze as well.
  virtual void hold_output() {}
  virtual void release_output() {}
  // The moving state of leg `leg` (an index into legs()).
  virtual std::vector<uint8_t> leg_received(size_t leg) const = 0;
  virtual std::vector<uint8_t> leg_app_state(size_t leg) const = 0;
  // Gives up every leg's pcb without closing it (the connections now live elsewhere), in
  // leg order; nullptr for a leg already gone. The session is dead afterwards and only
  // waits to be destroyed.
  virtual std::vector<tcp_pcb*> release_legs() = 0;
  // Closes gracefully (server shutdown).
  virtual void close() = 0;
  // What a checkpoint of it would hold now, read between lwIP callbacks; nullopt when no
  // checkpoint could rebuild it now. The default: a kind whose output no state regenerates
  // (echo, discard) is never checkpointed.
  virtual std::optional<CheckpointSource> checkpoint_source() const { return std::nullopt; }
};

// The usual session: one connection, accepted from a client.
class SingleLegSession : public MovableSession {
 public:
  // The connection's pcb, or nullptr once it is gone.
  virtual tcp_pcb* pcb() const = 0;
  virtual std::vector<uint8_t> received_unconsumed() const = 0;
  virtual std::vector<uint8_t> app_state() const = 0;
  // Gives up the pcb without closing it; the session is dead afterwards.
  virtual tcp_pcb* release_pcb() = 0;

  std::vector<SessionLeg> legs() const final { return {SessionLeg{pcb(), LegRole::client}}; }
  std::vector<uint8_t> leg_received(size_t) const final { return received_unconsumed(); }
  std::vector<uint8_t> leg_app_state(size_t) const final { return app_state(); }
  std::vector<tcp_pcb*> release_legs() final { return {release_pcb()}; }
};

// One leg as the new host imported it: its pcb (callbacks not yet set; the session
// installs them) and what travelled in its snapshot.
struct ImportedLeg {
  tcp_pcb* pcb = nullptr;
  LegRole role = LegRole::client;
  std::vector<uint8_t> received;  // delivered to the app first
  std::vector<uint8_t> app_state;
};

// Rebuilds one session of a kind around its imported legs (in the order legs() gave).
// Returns nullptr with `error` set, leaving every pcb untouched, when the legs or their
// app state do not fit the kind or name something this host cannot serve.
using SessionFactory = std::function<std::unique_ptr<MovableSession>(
    std::vector<ImportedLeg> legs, MovableSession::FinishedFn on_finished, std::string& error)>;
// The same for a SingleLegSession kind: its one client leg.
using SingleLegFactory = std::function<std::unique_ptr<MovableSession>(
    tcp_pcb* pcb, std::vector<uint8_t> received, const std::vector<uint8_t>& app_state,
    MovableSession::FinishedFn on_finished, std::string& error)>;

// The session kinds this host can rebuild, by name. The engine knows no app: whoever
// composes a node (apps/, a test) registers the kinds it serves.
class SessionKinds {
 public:
  void add(std::string kind, SessionFactory factory) { factories_[std::move(kind)] = std::move(factory); }
  // A kind whose sessions have exactly one client leg; anything else is refused.
  void add_single_leg(std::string kind, SingleLegFactory factory) {
    add(std::move(kind), [factory = std::move(factory)](std::vector<ImportedLeg> legs,
                                                        MovableSession::FinishedFn on_finished,
                                                        std::string& error) -> std::unique_ptr<MovableSession> {
      if (legs.size() != 1 || legs[0].role != LegRole::client) {
        error = "this kind has exactly one client leg";
        return nullptr;
      }
      return factory(legs[0].pcb, std::move(legs[0].received), legs[0].app_state, std::move(on_finished), error);
    });
  }
  bool knows(const std::string& kind) const { return factories_.count(kind) != 0; }
  // nullptr with `error` set for an unknown kind, no legs or a missing pcb, or what the
  // factory refused; the pcbs are then untouched.
  std::unique_ptr<MovableSession> make(const std::string& kind, std::vector<ImportedLeg> legs,
                                       MovableSession::FinishedFn on_finished, std::string& error) const {
    auto found = factories_.find(kind);
    if (found == factories_.end()) {
      error = "unknown session kind '" + kind + "'";
      return nullptr;
    }
    if (legs.empty()) {
      error = "no leg to rebuild a session on";
      return nullptr;
    }
    for (const auto& leg : legs) {
      if (leg.pcb == nullptr) {
        error = "no pcb to rebuild a session on";
        return nullptr;
      }
    }
    return found->second(std::move(legs), std::move(on_finished), error);
  }

 private:
  std::map<std::string, SessionFactory> factories_;
};

}  // namespace roam
