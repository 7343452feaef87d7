// TcpConnection: owns one lwIP tcp_pcb (RAII) and turns lwIP's C callbacks into calls on
// a Handler. Loop thread only.
//
// Lifetime rules (lwIP raw API): when lwIP calls the err callback the pcb is already
// freed, so we null our pointer and never touch it again. The destructor clears every
// callback before tcp_close (or tcp_abort if close fails), so no callback can reach a
// destroyed object. No exception ever crosses into lwIP: each trampoline is noexcept and
// aborts the connection if the handler throws.
//
// Backpressure: received data is handed over as a pbuf; the window reopens only when the
// consumer calls consumed() for bytes it really passed on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "stack/lwip.hpp"
#include "stack/pcb_owner.hpp"
#include "base/ip_address.hpp"
#include "base/result.hpp"

namespace roam {

class TcpConnection {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // An active open completed (never called for accepted connections).
    virtual void on_connected(TcpConnection&) {}
    // In-order data. Call consumed() once the bytes have left for their consumer.
    virtual void on_data(TcpConnection&, PbufPtr data) = 0;
    // The peer sent FIN: no more data will arrive.
    virtual void on_remote_closed(TcpConnection&) = 0;
    // `bytes` of our data were acknowledged; send space grew.
    virtual void on_sent(TcpConnection&, size_t bytes) = 0;
    // Reset, timeout or abort: the pcb is gone. The connection is dead after this call.
    virtual void on_error(TcpConnection&, err_t error) = 0;
  };

  // Takes ownership of an established pcb (from a listener's accept).
  TcpConnection(tcp_pcb* pcb, Handler* handler);
  ~TcpConnection();
  TcpConnection(const TcpConnection&) = delete;
  TcpConnection& operator=(const TcpConnection&) = delete;

  // Starts an active open to remote:port, from `local` when given, else from the node's
  // address on the route to it. The local port is unique toward remote:port (see
  // local_port_allocator.hpp); when every port is in use toward it, fails at once.
  // `syn_option`: what the SYN carries besides lwIP's own options (an owner proof,
  // stack/pcb_owner.hpp); nullptr: nothing.
  static Result<std::unique_ptr<TcpConnection>, std::string> connect(
      const IpAddress& remote, uint16_t port, Handler* handler, const IpAddress* local = nullptr,
      std::shared_ptr<const SynOptionSource> syn_option = nullptr);

  void set_handler(Handler* handler) { handler_ = handler; }
  bool alive() const { return pcb_ != nullptr; }
  tcp_pcb* pcb() const { return pcb_; }

  // Bytes write() would accept now.
  size_t send_space() const;
  // Copies up to send_space() bytes into lwIP's send queue; returns how many it took.
  size_t write(std::span<const uint8_t> bytes);
  // Pushes queued data out now (otherwise lwIP sends on its next ACK or timer).
  void flush();
  // The consumer has taken `bytes` received bytes: reopen the window by that much.
  void consumed(size_t bytes);
  // Sends FIN after queued data (half-close); reading continues.
  void shutdown_write();
  // Graceful close (FIN); lwIP finishes the handshake on its own. Callbacks stop.
  void close();
  // Sends RST and frees the pcb at once. Callbacks stop.
  void abort();
  // Gives up ownership without closing: callbacks stop and the caller owns the pcb (a
  // connection that is moving to another host). Never inside this connection's callback.
  tcp_pcb* release();

  std::string describe() const;
  // Bytes written and not yet sent (not counting what is in flight). Apps that can make
  // more data on demand keep this small: every unsent byte travels in a move's snapshot.
  size_t unsent_bytes() const;
  // Everything written, FIN included, was acknowledged. (snd_lbb - lastack cannot say
  // it: a FIN lwIP piggybacks on the last data segment does not advance snd_lbb.)
  bool everything_acknowledged() const;

 private:
  static err_t on_recv_trampoline(void* arg, tcp_pcb* pcb, pbuf* p, err_t err) noexcept;
  static err_t on_sent_trampoline(void* arg, tcp_pcb* pcb, u16_t len) noexcept;
  static err_t on_connected_trampoline(void* arg, tcp_pcb* pcb, err_t err) noexcept;
  static void on_err_trampoline(void* arg, err_t err) noexcept;
  void install_callbacks();
  void detach();

  tcp_pcb* pcb_;
  Handler* handler_;
  // Set while a callback runs: abort() inside it must be reported to lwIP as ERR_ABRT.
  bool in_callback_ = false;
  bool aborted_in_callback_ = false;
};

// Local ports of active opens (stack/local_port_allocator.hpp): how many one destination
// can hold at once, and how many are leased now (live pcbs, TIME_WAIT included).
size_t local_port_range_size();
size_t local_ports_in_use();

}  // namespace roam
