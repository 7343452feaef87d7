// TransparentListener: lwIP's side of roam-client --transparent (tun2socks style). One
// listening pcb bound to the transparent netif (the TUN device the kernel routes chosen
// prefixes into) catches a kernel application's SYN to any address and port that
// `accepts` allows (lwIP patch "transparent", cmake/LwipPatches.cmake): lwIP completes
// the handshake as that destination, and the established pcb (local = the destination the
// application dialled, remote = the kernel's address) goes to `on_accept`. A destination
// `accepts` refuses matches no listener, and lwIP answers the SYN with RST. Every pcb it
// makes is bound to the netif, so packets from other links never reach them.
// At most one per process (lwIP's hook is global). Loop thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "base/ip_address.hpp"
#include "base/result.hpp"
#include "stack/lwip.hpp"

namespace roam {

class TransparentListener {
 public:
  // Whether a connection to destination:port is taken (a pure decision, no side effect).
  using AcceptsFn = std::function<bool(const IpAddress& destination, uint16_t port)>;
  // An established pcb: take ownership (a TcpConnection) or abort it and return false.
  using AcceptFn = std::function<bool(tcp_pcb*)>;

  struct Counters {
    uint64_t accepted = 0;
    uint64_t refused_late = 0;  // established to a destination `accepts` refuses: reset
  };

  static Result<std::unique_ptr<TransparentListener>, std::string> listen(netif* interface, AcceptsFn accepts,
                                                                          AcceptFn on_accept);
  ~TransparentListener();
  TransparentListener(const TransparentListener&) = delete;
  TransparentListener& operator=(const TransparentListener&) = delete;

  void close();
  const Counters& counters() const { return counters_; }

 private:
  TransparentListener(tcp_pcb* pcb, AcceptsFn accepts, AcceptFn on_accept);
  static int catches(const tcp_pcb_listen* lpcb, const void* destination, u16_t port) noexcept;
  static err_t on_accept_trampoline(void* arg, tcp_pcb* pcb, err_t err) noexcept;
  err_t accept(tcp_pcb* pcb) noexcept;

  tcp_pcb* pcb_;
  AcceptsFn accepts_;
  AcceptFn on_accept_;
  Counters counters_;
};

}  // namespace roam
