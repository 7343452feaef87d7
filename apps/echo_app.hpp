// Built-in server apps that live entirely on the carrier: `echo` sends every byte back,
// `discard` swallows them (RFC 863; the throughput benchmark's sink). Each session owns its
// carrier; the server's session table owns the session. Sessions can move to another
// server (MovableSession). Loop thread only.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "stack/migrate/movable_session.hpp"
#include "apps/session_end.hpp"
#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"

namespace roam {

class EchoSession final : public SingleLegSession, public TcpConnection::Handler {
 public:
  // Also accepts a callable taking MovableSession* (so one session table serves all kinds).
  using FinishedFn = std::function<void(EchoSession*)>;
  enum class Mode { echo, discard };

  // An accepted connection.
  EchoSession(Node& node, Mode mode, tcp_pcb* pcb, FinishedFn on_finished);
  ~EchoSession() override;

  // Rebuilds a moved session around an imported pcb: `received` is treated as just
  // received, then the session carries on. It sends nothing before the next loop turn, so
  // the importer can park the pcb first. Returns nullptr with `error` set, leaving the pcb
  // untouched, when `app_state` is malformed.
  static std::unique_ptr<EchoSession> import(Node& node, Mode mode, tcp_pcb* pcb, std::vector<uint8_t> received,
                                             std::span<const uint8_t> app_state, FinishedFn on_finished,
                                             std::string& error);

  // MovableSession
  const char* kind() const override { return mode_ == Mode::echo ? "echo" : "discard"; }
  tcp_pcb* pcb() const override { return carrier_->pcb(); }
  bool movable() const override;
  void freeze() override;
  void thaw() override;
  std::vector<uint8_t> received_unconsumed() const override;
  // One byte: 1 when the client already sent FIN (its pcb is in CLOSE_WAIT), else 0.
  std::vector<uint8_t> app_state() const override;
  tcp_pcb* release_pcb() override;
  // Graceful when the client already closed, else a reset. Not while frozen: thaw first.
  void close() override;

  // TcpConnection::Handler
  void on_data(TcpConnection&, PbufPtr data) override;
  void on_remote_closed(TcpConnection&) override;
  void on_sent(TcpConnection&, size_t bytes) override;
  void on_error(TcpConnection&, err_t error) override;

 private:
  void start_frozen();
  void pump();
  void finish(bool reset);

  Node& node_;
  Mode mode_;
  std::unique_ptr<TcpConnection> carrier_;
  SessionEnd end_;
  // Bytes received but not yet echoed (discard: only those that arrived while frozen).
  // They hold the window shut until echoed: the client cannot outrun its own reading.
  std::vector<uint8_t> pending_;
  size_t pending_offset_ = 0;
  bool remote_eof_ = false;
  bool fin_sent_ = false;
  // Between freeze() and thaw(): no tcp_write, tcp_output or tcp_recved on the pcb.
  bool frozen_ = false;
};

}  // namespace roam
