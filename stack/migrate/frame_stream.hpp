// FrameStream: one kernel TCP connection (libuv) carrying control frames
// (stack/migrate/control_frame.hpp): roamctl <-> server and server <-> server. Owned by
// whoever created it; the stream reports each frame and its end through callbacks, never
// from inside its destructor. Loop thread only.
//
// A secured stream (secure(), the control port) runs a Noise XX handshake first
// (crypto/noise_stream.hpp) and carries the frames inside its records. Nothing is
// delivered, and for an initiator on_connected does not run, until the handshake is done
// and the owner's on_authenticated accepted the peer's key and credential; frames sent
// before that wait, encrypted once the keys exist.
#pragma once

#include <uv.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "crypto/noise_stream.hpp"
#include "stack/migrate/control_frame.hpp"
#include "base/uv_handle.hpp"

namespace roam {

class FrameStream {
 public:
  using FrameFn = std::function<void(FrameStream&, migrate::Frame)>;
  // Called once: the peer closed, an I/O error, or a malformed frame. `reason` says which.
  using ClosedFn = std::function<void(FrameStream&, const std::string& reason)>;
  using ConnectedFn = std::function<void(FrameStream&)>;
  // The handshake finished: whether the owner accepts this peer (false closes the stream).
  using AuthenticatedFn = std::function<bool(FrameStream&)>;

  FrameStream(uv_loop_t* loop, FrameFn on_frame, ClosedFn on_closed);
  ~FrameStream();
  FrameStream(const FrameStream&) = delete;
  FrameStream& operator=(const FrameStream&) = delete;

  // Before accept_from or connect: run the Noise handshake first and carry frames in it.
  void secure(std::unique_ptr<crypto::NoiseStream> noise, AuthenticatedFn on_authenticated);
  bool secured() const { return noise_ != nullptr; }
  // Secured: the handshake finished and the owner accepted the peer.
  bool authenticated() const { return authenticated_; }
  // Secured and authenticated: who is at the other end.
  const crypto::NoiseStream* noise() const { return noise_.get(); }

  // Accepts a pending connection from `server`. Returns false on failure.
  bool accept_from(uv_stream_t* server);
  // Connects to `address`; on_connected runs on success, on_closed on failure.
  bool connect(const sockaddr* address, ConnectedFn on_connected);

  void send(migrate::FrameType type, std::span<const uint8_t> payload);
  void send(migrate::FrameType type, std::string_view text);
  // Sends a frame built with migrate::begin_frame / finish_frame, without copying it.
  void send_frame(std::vector<uint8_t> frame);
  // Hands the stream to another owner (a cached control connection, then the move that
  // reuses it): its frames and its end go to these callbacks from now on. Never call it
  // from inside one of this stream's own callbacks (the running one would be destroyed).
  void rebind(FrameFn on_frame, ClosedFn on_closed);
  // Kernel TCP keepalive on the socket (a peer host that vanished without a FIN or RST is
  // noticed even while no frame is due); before a connect completes, applied then. False
  // if the socket refused it.
  bool keepalive(unsigned idle_seconds);
  // Closes after everything queued was written.
  void close_after_writes();
  bool open() const { return open_; }
  // uv_hrtime() of the latest read from the socket: inside on_frame, when the bytes that
  // completed the frame came (the migration timeline in status; one clock read per read).
  uint64_t last_read_ns() const { return last_read_ns_; }

 private:
  struct Write;
  static void on_connect(uv_connect_t* request, int status) noexcept;
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_written(uv_write_t* request, int status) noexcept;
  void start_reading();
  void start_handshake();
  bool feed_secured(std::span<const uint8_t> bytes);
  void write_bytes(std::vector<uint8_t> bytes);
  void fail(const std::string& reason);

  uv_loop_t* loop_;
  UvHandle<uv_tcp_t> socket_;
  FrameFn on_frame_;
  ClosedFn on_closed_;
  ConnectedFn on_connected_;
  migrate::FrameReader reader_;
  std::unique_ptr<crypto::NoiseStream> noise_;
  AuthenticatedFn on_authenticated_;
  std::vector<uint8_t> unsent_plaintext_;  // frames sent before the handshake finished
  bool authenticated_ = false;
  std::vector<uint8_t> read_buffer_;
  // Shared with in-flight requests: a request completing after destruction sees it false.
  std::shared_ptr<bool> alive_;
  size_t writes_in_flight_ = 0;
  bool open_ = false;
  bool close_when_drained_ = false;
  bool closed_reported_ = false;
  unsigned keepalive_seconds_ = 0;  // keepalive(): 0 = off
  uint64_t last_read_ns_ = 0;
};

}  // namespace roam
