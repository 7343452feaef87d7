// TcpListener: owns one listening lwIP pcb and hands each accepted pcb to a callback that
// wraps it in a TcpConnection. Loop thread only.
//
// Every live listener is in a per-process registry by port (lwIP is a singleton, so is
// its port space): the SYN defense (stack/defense/syn_defense.hpp) finds the listener a
// SYN or a cookie's ACK is for, and hands a connection it built from a verified cookie to
// accept_established, the same path lwIP's own accepted pcbs take.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "stack/lwip.hpp"
#include "base/result.hpp"

namespace roam {

class TcpListener;

// Told about listeners as they come and go, and asked before each accept (admission
// control). At most one per process (SynDefense).
class ListenerWatcher {
 public:
  virtual ~ListenerWatcher() = default;
  virtual void listening(TcpListener& listener) = 0;
  virtual void closing(TcpListener& listener) = 0;
  // False: refuse this new connection (the caller aborts it).
  virtual bool admit(TcpListener& listener, tcp_pcb* pcb) = 0;
};

class TcpListener {
 public:
  // Receives an established pcb; must take ownership (wrap it in a TcpConnection) or abort it.
  // Returns false if it aborted the pcb.
  using AcceptFn = std::function<bool(tcp_pcb*)>;

  ~TcpListener();
  TcpListener(const TcpListener&) = delete;
  TcpListener& operator=(const TcpListener&) = delete;

  // Listens on `port` on every address of the node, IPv4 and IPv6.
  static Result<std::unique_ptr<TcpListener>, std::string> listen(uint16_t port, AcceptFn on_accept);

  void close();
  uint16_t port() const { return port_; }
  // The listening pcb (nullptr once closed).
  tcp_pcb* listen_pcb() const { return pcb_; }

  // Accepts an ESTABLISHED pcb that lwIP did not make from a SYN of its own (a verified SYN
  // cookie): connection id, the owner its SYN proved, admission, then the accept callback.
  // False when the pcb was refused or aborted (it is gone then).
  bool accept_established(tcp_pcb* pcb);

  // The live listener on `port`, or nullptr.
  static TcpListener* find(uint16_t port);
  static std::vector<TcpListener*> all();
  // Installs (or, with nullptr, removes) the watcher; it is told about every live listener.
  static void set_watcher(ListenerWatcher* watcher);

 private:
  TcpListener(tcp_pcb* pcb, uint16_t port, AcceptFn on_accept);
  static err_t on_accept_trampoline(void* arg, tcp_pcb* pcb, err_t err) noexcept;
  err_t accept(tcp_pcb* pcb) noexcept;

  tcp_pcb* pcb_;
  uint16_t port_;
  AcceptFn on_accept_;
};

}  // namespace roam
