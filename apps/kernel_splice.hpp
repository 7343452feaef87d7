// KernelSplice: joins one kernel TCP socket (libuv) and one carrier connection (lwIP),
// copying bytes both ways with backpressure. Used by roam-client (kernel side accepted
// from a local app) and by roam-server's relay (kernel side connected to the backend).
// Owned by its app's session table; destroyed only after `on_finished`. Loop thread only.
//
//   kernel --read--> [one buffer per process] --tcp_write--> carrier  (each read is sized
//                                                                  by lwIP's free send space
//                                                                  and copied into it at once;
//                                                                  reads pause while that
//                                                                  space is short, resume
//                                                                  on_sent)
//   carrier --pbuf--> uv_write (zero copy) --> kernel              (tcp_recved only when the
//                                                                  kernel took the bytes)
// Half-closes travel through: kernel EOF -> carrier FIN, carrier FIN -> kernel shutdown.
// A reset on either side resets the other.
//
// Memory: an idle splice holds no buffer. The read buffer is shared by every splice of the
// process (libuv calls alloc, read and the read callback back to back for one stream, and
// the callback copies the bytes into lwIP before returning); only bytes lwIP refused are
// kept per splice (pending_to_carrier_), and that storage is freed once they are sent.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"
#include "base/uv_handle.hpp"

namespace roam {

class KernelSplice final : public TcpConnection::Handler {
 public:
  using FinishedFn = std::function<void(KernelSplice*)>;

  KernelSplice(Node& node, FinishedFn on_finished);
  ~KernelSplice() override;

  // Takes a connected kernel socket (initialized on node.loop()). `already_read`: bytes
  // the app sent that were read before (past a SOCKS request), carried first.
  void adopt_kernel(UvHandle<uv_tcp_t> kernel, std::vector<uint8_t> already_read = {});
  // Opens the kernel side towards a backend.
  void connect_kernel(const sockaddr* backend);
  // Takes the carrier; `established` is false while an active open is still running.
  void adopt_carrier(std::unique_ptr<TcpConnection> carrier, bool established);

  // Called once an active open of the carrier completed (roam-client registers it with
  // the server's control channel).
  void set_on_carrier_connected(std::function<void(tcp_pcb*)> callback) { on_carrier_connected_ = std::move(callback); }
  // Called once when the carrier ends under us (reset, refused, dead peer: carrier.loss()
  // says which), just before both sides are reset; not when we close it ourselves.
  void set_on_carrier_lost(std::function<void(const TcpConnection&)> callback) {
    on_carrier_lost_ = std::move(callback);
  }

  // A relay that keeps what it relays (PROTOCOL.md 14.8.3; off unless set): `to_carrier`
  // sees every byte read from the kernel, before it goes toward the carrier;
  // `from_carrier` counts the bytes taken from the carrier for the kernel; with
  // `carrier_lost` set, a carrier that ends under us no longer resets the kernel side:
  // it is called instead, reads stop (no carrier, no room) and the kernel socket stays
  // open until close() or replace_carrier().
  struct Replay {
    std::function<void(std::span<const uint8_t>)> to_carrier;
    std::function<void(size_t)> from_carrier;
    std::function<void()> carrier_lost;
  };
  void set_replay(Replay replay) { replay_ = std::move(replay); }
  // Puts an established `carrier` in place of the current one (which is reset if still
  // open): it carries `first` (bytes read from the kernel earlier: the replay) before
  // anything read from now on, drops the first `drop` bytes it delivers (the kernel had
  // them already), and `early` are bytes it delivered before the handover (`early_fin`:
  // and then its FIN). Outside lwIP
  // callbacks of the old carrier only.
  void replace_carrier(std::unique_ptr<TcpConnection> carrier, std::vector<uint8_t> first, uint64_t drop,
                       std::span<const uint8_t> early, bool early_fin = false);

  // The carrier's pcb, nullptr before adopt_carrier and once the carrier is gone.
  tcp_pcb* carrier_pcb() const { return carrier_ ? carrier_->pcb() : nullptr; }

  // Closes both sides now (process shutdown). Graceful where nothing is left in flight.
  void close();

  // TcpConnection::Handler
  void on_connected(TcpConnection&) override;
  void on_data(TcpConnection&, PbufPtr data) override;
  void on_remote_closed(TcpConnection&) override;
  void on_sent(TcpConnection&, size_t bytes) override;
  void on_error(TcpConnection&, err_t error) override;

 private:
  struct KernelWrite;
  static void on_kernel_connected(uv_connect_t* request, int status) noexcept;
  static void on_kernel_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_kernel_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_kernel_written(uv_write_t* request, int status) noexcept;
  static void on_kernel_shutdown(uv_shutdown_t* request, int status) noexcept;
  static void on_kernel_closed(uv_handle_t* handle) noexcept;

  void start_if_ready();
  // The kernel socket was reset (its pending error), even if libuv reported EOF.
  bool kernel_reset_pending() const;
  void kernel_data(const uint8_t* data, size_t length);
  void pump_to_carrier();
  void start_kernel_reads();
  void pause_kernel_reads();
  void write_to_kernel(PbufPtr data);
  void maybe_shutdown_kernel();
  void maybe_finish();
  void fail(const char* why);  // reset both sides
  void teardown(bool reset);
  void finish_teardown();

  Node& node_;
  FinishedFn on_finished_;
  std::function<void(tcp_pcb*)> on_carrier_connected_;
  std::function<void(const TcpConnection&)> on_carrier_lost_;
  UvHandle<uv_tcp_t> kernel_;
  std::unique_ptr<TcpConnection> carrier_;

  bool kernel_ready_ = false;
  bool carrier_ready_ = false;
  bool started_ = false;
  bool kernel_reading_ = false;
  bool kernel_eof_ = false;        // kernel app sent FIN
  bool carrier_fin_sent_ = false;  // we forwarded it
  bool carrier_eof_ = false;       // carrier peer sent FIN
  bool kernel_shutdown_sent_ = false;
  bool kernel_shutdown_done_ = false;
  bool closing_ = false;
  bool teardown_scheduled_ = false;
  bool kernel_open_ = false;  // initialized and its close callback has not run yet

  std::vector<uint8_t> pending_to_carrier_;
  size_t pending_offset_ = 0;
  // Carrier data that arrived before the backend connected (a vector: an empty deque
  // allocates ~600 bytes, per idle splice).
  std::vector<PbufPtr> waiting_for_kernel_;
  size_t kernel_writes_in_flight_ = 0;
  Replay replay_;
  uint64_t drop_from_carrier_ = 0;  // replace_carrier: up bytes the kernel already has
  uint64_t carrier_generation_ = 0;  // counts replace_carrier: kernel writes of an old carrier's bytes
};

}  // namespace roam
