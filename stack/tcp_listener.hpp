// TcpListener: owns one listening lwIP pcb and hands each accepted pcb to a callback that
// wraps it in a TcpConnection. Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "stack/lwip.hpp"
#include "base/result.hpp"

namespace roam {

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

 private:
  TcpListener(tcp_pcb* pcb, uint16_t port, AcceptFn on_accept);
  static err_t on_accept_trampoline(void* arg, tcp_pcb* pcb, err_t err) noexcept;

  tcp_pcb* pcb_;
  uint16_t port_;
  AcceptFn on_accept_;
};

}  // namespace roam
