// ProxySession: one session of roam-server's proxy mode (DESIGN.md section 2): a client
// leg (a carrier accepted from a roam-client) spliced to an origin leg (a carrier this
// host opened in its own lwIP stack to the origin, a roam-server relaying to the real
// service). Both legs are lwIP connections, so both move with the session
// (MovableSession, kind "proxy"). Owned by the server's session table; loop thread only.
//
//   client leg --pbuf--> held[client] --tcp_write--> origin leg
//   origin leg --pbuf--> held[origin] --tcp_write--> client leg
//
// Backpressure: every byte lwIP delivers is copied into its direction's `held` buffer,
// and the receiving leg's window reopens (tcp_recved) only for bytes the other leg's
// send buffer took. So each direction holds at most one receive window (TCP_WND) here,
// and a slow reader on one side closes the window of the sender on the other. Writes run
// once per loop turn (deferred), not once per arriving segment, and refill a full send
// buffer only in large steps: each tcp_write walks lwIP's unsent queue.
// Half-close: a FIN on one leg becomes a shutdown of writing on the other once everything
// held for it was written; the session ends when both directions closed and both legs'
// data was acknowledged. A reset or error on either leg resets the other.
// Moves: `held` is each leg's `received` state (bytes taken from its lwIP but not yet
// written into the other leg); the new host writes them into the other leg first.
// Stream offsets (PROTOCOL.md 14.8.1): the session counts the down bytes it wrote into
// the client leg and the up bytes it took from it, and they move with it (the client
// leg's app state, version 3), so that a checkpoint can name the client's position in
// the relayed streams (resume_state).
#pragma once

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "apps/proxy_resume_state.hpp"
#include "stack/migrate/movable_session.hpp"
#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"

namespace roam {

class ProxySession final : public MovableSession, public TcpConnection::Handler {
 public:
  static constexpr size_t client_leg = 0;
  static constexpr size_t origin_leg = 1;

  struct Hooks {
    // The origin leg's active open completed (the server registers it with the origin).
    std::function<void(tcp_pcb*)> on_origin_connected;
    // The origin leg could not be opened or was refused; the client leg is being reset.
    std::function<void(const std::string& why)> on_origin_failed;
  };

  // A client leg just accepted; its origin leg comes later (attach_origin) or never
  // (fail_origin). Until then what the client sends is held.
  ProxySession(Node& node, tcp_pcb* client, FinishedFn on_finished, Hooks hooks = {});
  ~ProxySession() override;
  ProxySession(const ProxySession&) = delete;
  ProxySession& operator=(const ProxySession&) = delete;

  // The origin leg's active open, started with this session as its handler.
  void attach_origin(std::unique_ptr<TcpConnection> origin);
  // No origin leg can be opened: resets the client leg.
  void fail_origin(const std::string& why);
  // Expires when the session is destroyed (for work deferred on its behalf).
  std::weak_ptr<bool> lifetime() const { return lifetime_; }

  // Rebuilds a moved session from its imported legs (client, then origin). It sends
  // nothing before the next loop turn. nullptr with `error` set, every pcb untouched,
  // when the legs or their app state do not fit.
  static std::unique_ptr<ProxySession> import(Node& node, std::vector<ImportedLeg> legs, FinishedFn on_finished,
                                              std::string& error);
  // A session rebuilt from a checkpoint (PROTOCOL.md 14.8.5): the client leg only, its
  // state already rebased to the client's view. Its origin leg (attach_origin, to the
  // relay's replay port) first sends RELAY_RESUME for `state`; nothing is forwarded
  // before the relay's RELAY_RESUMED, and a refusal resets the client leg.
  static std::unique_ptr<ProxySession> import_resumed(Node& node, tcp_pcb* client, const ProxyResumeState& state,
                                                      FinishedFn on_finished, Hooks hooks);

  // MovableSession
  const char* kind() const override { return "proxy"; }
  std::vector<SessionLeg> legs() const override;
  // Both legs established, no FIN either way, not ending.
  bool movable() const override;
  void freeze() override;
  void thaw() override;
  std::vector<uint8_t> leg_received(size_t leg) const override;
  // The client leg's is encode_proxy_move_state's (proxy_move_state_bare, or version 3 with
  // the stream offsets, apps/proxy_resume_state.hpp); the origin leg's is empty.
  std::vector<uint8_t> leg_app_state(size_t leg) const override;
  std::vector<tcp_pcb*> release_legs() override;
  // Why it stays at a move when movable() is false: its origin leg is not up yet, a
  // direction is half-closed, or it is ending.
  StayReason stay_reason() const override;
  // Graceful when both directions already ended, else a reset of both legs.
  void close() override;

  // TcpConnection::Handler
  void on_connected(TcpConnection&) override;
  void on_data(TcpConnection&, PbufPtr data) override;
  void on_remote_closed(TcpConnection&) override;
  void on_sent(TcpConnection&, size_t bytes) override;
  void on_error(TcpConnection&, err_t error) override;

  // Bytes held per direction now (tests, status).
  size_t held(size_t from_leg) const { return flows_[from_leg].remaining(); }
  // The stream offsets of the client leg's send point (down: its snd_lbb) and receive
  // point (up: its rcv_nxt); nullopt for a session imported from a host that did not
  // count them.
  std::optional<ProxyStreamOffsets> offsets() const;
  // What a checkpoint of this session carries (PROTOCOL.md 14.8.2), read between lwIP
  // callbacks: nullopt unless the session is movable, its offsets are known, its origin
  // leg has a connection id and lwIP holds no refused bytes on the client leg (they
  // would be counted in rcv_nxt but not in `up`).
  std::optional<ProxyResumeState> resume_state() const;
  // The client leg, with resume_state() encoded: the stream offsets the relay re-sends
  // from (PROTOCOL.md 14.8.2).
  std::optional<CheckpointSource> checkpoint_source() const override;

 private:
  // Bytes travelling from one leg to the other.
  struct Flow {
    std::vector<uint8_t> held;  // taken from the source leg, not yet written to the other
    size_t offset = 0;          // held[offset..] is still to be written
    bool eof = false;           // the source leg's peer sent FIN
    bool fin_forwarded = false;  // ...and we shut down writing on the other leg
    size_t remaining() const { return held.size() - offset; }
  };

  size_t leg_of(const TcpConnection& connection) const;
  bool ready() const { return legs_[origin_leg] != nullptr && origin_connected_ && !awaiting_answer_; }
  // A resumed session's origin leg delivered `data` while RELAY_RESUMED is awaited.
  void take_resume_answer(TcpConnection& origin, PbufPtr data);
  void schedule_pump();
  void pump();
  void forward(size_t from);
  void maybe_finish();
  void end(bool reset);
  void resume_later();
  // A leg imported here whose peer has not arrived yet: lwIP does not know it, the
  // importer's guard does.
  static bool parked_import(const tcp_pcb* pcb);

  Node& node_;
  FinishedFn on_finished_;
  Hooks hooks_;
  std::array<std::unique_ptr<TcpConnection>, 2> legs_;
  std::array<Flow, 2> flows_;  // indexed by source leg
  bool origin_connected_ = false;
  // Stream offsets (14.8.1): down bytes written into the client leg, up bytes taken from
  // it, since the relayed connection began; unknown after an import of a bare state.
  uint64_t down_ = 0;
  uint64_t up_ = 0;
  bool offsets_known_ = true;
  // Resumed sessions (14.8.5): the RELAY_RESUME to send first, and the answer awaited.
  std::vector<uint8_t> resume_request_;
  std::vector<uint8_t> answer_;
  bool awaiting_answer_ = false;
  bool frozen_ = false;
  bool pump_scheduled_ = false;
  bool resume_pending_ = false;
  bool ending_ = false;  // ending or released: nothing more happens
  std::shared_ptr<bool> lifetime_ = std::make_shared<bool>(true);
};

// Registers kind "proxy" (ProxySession::import on `node`): a host that runs proxy mode
// can take proxy sessions moved from another. The imported origin leg carries its own
// addresses, so it need not lead to this host's own origin.
// `open_resumed` (optional): opens the origin leg of a session rebuilt from a checkpoint
// (a client leg alone whose app state is a ProxyResumeState); without it such a session
// is refused.
using OpenResumedOrigin = std::function<void(ProxySession&)>;
void add_proxy_session_kind(SessionKinds& kinds, Node& node, OpenResumedOrigin open_resumed = nullptr,
                            ProxySession::Hooks resumed_hooks = {});

}  // namespace roam
