// Built-in server apps that live entirely on the carrier: `echo` sends every byte back,
// `discard` swallows them (RFC 863; the throughput benchmark's sink). Each session owns its
// carrier; the server's session table owns the session. Loop thread only.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"

namespace roam {

class EchoSession final : public TcpConnection::Handler {
 public:
  using FinishedFn = std::function<void(EchoSession*)>;
  enum class Mode { echo, discard };

  EchoSession(Node& node, Mode mode, tcp_pcb* pcb, FinishedFn on_finished);
  ~EchoSession() override;
  void close();

  void on_data(TcpConnection&, PbufPtr data) override;
  void on_remote_closed(TcpConnection&) override;
  void on_sent(TcpConnection&, size_t bytes) override;
  void on_error(TcpConnection&, err_t error) override;

 private:
  void pump();
  void finish(bool reset);

  Node& node_;
  Mode mode_;
  std::unique_ptr<TcpConnection> carrier_;
  FinishedFn on_finished_;
  // Bytes received but not yet echoed. They hold the window shut until echoed: the
  // client cannot outrun its own reading.
  std::vector<uint8_t> pending_;
  size_t pending_offset_ = 0;
  bool remote_eof_ = false;
  bool fin_sent_ = false;
  bool finishing_ = false;
};

}  // namespace roam
