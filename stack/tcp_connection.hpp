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
//
// Send buffer (stack/send_buffer_tuner.hpp): by default each connection may queue only
// what its path needs (64 KiB at first, growing with the measured bandwidth-delay product
// up to TCP_SND_BUF); send_space() and write() honour that limit. set_send_buffer_autotune
// (false) gives every connection the whole TCP_SND_BUF, as before.
//
// Receive window (stack/receive_window_tuner.hpp): by default each connection lets its
// peer have at most what its path needs outstanding toward it (64 KiB at first, growing
// as Linux's receive autotuning does, up to TCP_WND), so an app that stops reading holds
// that much here, not 4 MiB. lwIP knows only its fixed TCP_WND: the rest is withheld
// credit, bytes consumed() does not hand to tcp_recved (and taken from rcv_wnd at the
// start, above the right edge already announced, which never moves left). The credit goes
// back to lwIP before tcp_close (lwIP answers a close with unread data by RST) and
// release(); an imported pcb's window is recomputed (stack/migrate/pcb_migration.cpp).
// set_receive_buffer_autotune(false): lwIP's fixed TCP_WND, as before.
//
// Dead peers (stack/dead_peer.hpp): with a process-wide DeadPeerPolicy set, every
// connection is polled by lwIP's slow timer; a silent peer is probed, then given up on,
// and the handler's on_error says why through loss(). lwIP's own endings (RST, its
// retransmission limit) are named the same way.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "stack/dead_peer.hpp"
#include "stack/receive_window_tuner.hpp"
#include "stack/send_buffer_tuner.hpp"
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
    // Reset, timeout or abort: the pcb is gone. The connection is dead after this call;
    // loss() says why.
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

  // Bytes write() would accept now: lwIP's free send buffer, within this connection's
  // send-buffer limit.
  size_t send_space() const;
  // Unacknowledged plus unsent bytes this connection may keep in lwIP now.
  size_t send_buffer_limit() const;
  // The send space worth waking a writer for: `preferred`, or half the send-buffer limit
  // when that is smaller (a writer waiting for more than the limit frees would wait forever).
  size_t send_step(size_t preferred) const { return std::min(preferred, send_buffer_limit() / 2); }
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
  // Why the connection ended under us (none while alive, or when we closed it).
  PeerLoss loss() const { return loss_; }
  // loss() in words, with what was seen: "keepalive timeout (nothing heard for 30.0 s)".
  std::string loss_text() const;
  // The remote endpoint as last seen ("IP:PORT"; also after the pcb is gone). A connection
  // that moved shows its new endpoint from the next poll on.
  std::string peer() const;

  // The dead-peer policy of every connection in this process (lwIP is one per process),
  // for connections created from now on. Default: inactive.
  static void set_dead_peer_policy(const DeadPeerPolicy& policy);
  static const DeadPeerPolicy& dead_peer_policy();
  // Whether connections created from now on size their send buffer to the path (default)
  // or may always queue TCP_SND_BUF.
  static void set_send_buffer_autotune(bool on);
  static bool send_buffer_autotune();
  // Whether connections created from now on size their receive window to the path
  // (default) or always offer TCP_WND.
  static void set_receive_buffer_autotune(bool on);
  static bool receive_buffer_autotune();
  // Unread bytes plus open window this connection allows now (TCP_WND when fixed).
  size_t receive_window_limit() const;
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
  static err_t on_poll_trampoline(void* arg, tcp_pcb* pcb) noexcept;
  void install_callbacks();
  void note_remote();
  void lose(PeerLoss loss);
  void detach();
  // Receive window: takes from lwIP's rcv_wnd the credit this connection withholds, as
  // far as the right edge already announced allows (on taking the pcb, and once an active
  // open is synchronized: lwIP resets rcv_wnd when window scaling is agreed).
  void start_receive_window();
  // Hands `bytes` of credit to lwIP (tcp_recved takes 16-bit lengths).
  void give_window(size_t bytes);
  // Gives lwIP back every withheld byte, announcing nothing (before close and release).
  void return_withheld();

  tcp_pcb* pcb_;
  Handler* handler_;
  // Set while a callback runs: abort() inside it must be reported to lwIP as ERR_ABRT.
  bool in_callback_ = false;
  bool aborted_in_callback_ = false;
  bool connected_ = false;  // synchronized once: a RST before it is a refusal
  PeerLoss loss_ = PeerLoss::none;
  uint64_t silent_ms_ = 0;  // at our own give-up
  bool autotune_;
  SendBufferTuner send_tuner_{TCP_SND_BUF};
  bool receive_autotune_;
  ReceiveWindowTuner receive_tuner_{TCP_WND};
  size_t withheld_ = 0;  // window credit lwIP does not know it has
  IpAddress remote_;
  uint16_t remote_port_ = 0;
};

// Connections lost, by reason, in this process since it started (every TcpConnection).
uint64_t peer_losses(PeerLoss reason);
// "reset by peer 0, refused 0, connect timeout 1, ..." for a shutdown line.
std::string peer_losses_text();

// Local ports of active opens (stack/local_port_allocator.hpp): how many one destination
// can hold at once, and how many are leased now (live pcbs, TIME_WAIT included).
size_t local_port_range_size();
size_t local_ports_in_use();

// For a listener's accept callback, before anything else is sent: lwIP books the SYN-ACK's
// window as announced in full (rcv_ann_right_edge = rcv_nxt + rcv_ann_wnd, TCP_WND once
// scaling is agreed), but a SYN's window is never scaled (RFC 7323 2.2): the peer was told
// at most 65535. Booked as told, a connection that sizes its receive window may start
// below TCP_WND without moving an edge the peer knows (lwIP accepts before it takes the
// ACK's data; a SYN-cookie pcb is built from that ACK).
void book_syn_window(tcp_pcb* pcb);

// How long lwIP has taken no segment of this connection (pcb->tmr: when it last did, or,
// connecting, when the pcb was made), in milliseconds at the slow timer's resolution.
uint64_t pcb_silent_ms(const tcp_pcb* pcb);

}  // namespace roam
