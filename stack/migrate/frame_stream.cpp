#include "stack/migrate/frame_stream.hpp"

#include "base/log.hpp"

namespace roam {

namespace {
constexpr size_t read_chunk = 256 * 1024;

struct ConnectRequest {
  uv_connect_t request{};
  FrameStream* stream;
  std::shared_ptr<bool> alive;
};
}  // namespace

struct FrameStream::Write {
  uv_write_t request{};
  std::vector<uint8_t> bytes;
  FrameStream* stream;
  std::shared_ptr<bool> alive;
};

FrameStream::FrameStream(uv_loop_t* loop, FrameFn on_frame, ClosedFn on_closed)
    : loop_(loop),
      on_frame_(std::move(on_frame)),
      on_closed_(std::move(on_closed)),
      alive_(std::make_shared<bool>(true)) {
  if (uv_tcp_init(loop_, socket_.get()) == 0) socket_.mark_initialized();
  socket_.get()->data = this;
}

FrameStream::~FrameStream() {
  *alive_ = false;
  if (socket_.valid()) socket_.get()->data = nullptr;
}

bool FrameStream::accept_from(uv_stream_t* server) {
  if (!socket_.valid() || uv_accept(server, socket_.stream()) != 0) return false;
  uv_tcp_nodelay(socket_.get(), 1);
  open_ = true;
  start_reading();
  start_handshake();
  return true;
}

void FrameStream::secure(std::unique_ptr<crypto::NoiseStream> noise, AuthenticatedFn on_authenticated) {
  noise_ = std::move(noise);
  on_authenticated_ = std::move(on_authenticated);
}

void FrameStream::start_handshake() {
  if (!noise_) return;
  auto first = noise_->start();
  if (!first.empty()) write_bytes(std::move(first));
}

// Feeds transport bytes through the Noise stream; the plaintext goes to the frame reader.
// False when the stream ended (failed, refused or destroyed by a callback).
bool FrameStream::feed_secured(std::span<const uint8_t> bytes) {
  std::vector<uint8_t> to_send, plaintext;
  bool was_established = noise_->established();
  auto fed = noise_->feed(bytes, to_send, plaintext);
  if (!to_send.empty()) write_bytes(std::move(to_send));
  if (!fed) {
    fail(crypto::noise_stream_error_name(fed.error()));
    return false;
  }
  if (!was_established && noise_->established()) {
    std::shared_ptr<bool> alive = alive_;
    bool accepted = on_authenticated_ ? on_authenticated_(*this) : true;
    if (!*alive || !open_) return false;
    if (!accepted) {
      fail("peer not authorized");
      return false;
    }
    authenticated_ = true;
    if (!unsent_plaintext_.empty()) {
      std::vector<uint8_t> queued = std::move(unsent_plaintext_);
      unsent_plaintext_.clear();
      send_frame(std::move(queued));
    }
    if (on_connected_) {
      auto connected = std::move(on_connected_);
      on_connected_ = nullptr;
      connected(*this);
      if (!*alive || !open_) return false;
    }
  }
  if (!plaintext.empty()) reader_.feed(std::move(plaintext));
  return true;
}

bool FrameStream::connect(const sockaddr* address, ConnectedFn on_connected) {
  if (!socket_.valid()) return false;
  on_connected_ = std::move(on_connected);
  auto* request = new ConnectRequest{{}, this, alive_};
  int rc = uv_tcp_connect(&request->request, socket_.get(), address, &FrameStream::on_connect);
  if (rc != 0) {
    delete request;
    return false;
  }
  return true;
}

void FrameStream::on_connect(uv_connect_t* raw, int status) noexcept {
  std::unique_ptr<ConnectRequest> request(reinterpret_cast<ConnectRequest*>(raw));
  if (!*request->alive) return;
  FrameStream* self = request->stream;
  if (status != 0) {
    self->fail(std::string("connect: ") + uv_strerror(status));
    return;
  }
  uv_tcp_nodelay(self->socket_.get(), 1);
  if (self->keepalive_seconds_ != 0) uv_tcp_keepalive(self->socket_.get(), 1, self->keepalive_seconds_);
  self->open_ = true;
  self->start_reading();
  if (self->noise_) {
    self->start_handshake();  // on_connected runs once the peer is authenticated
    return;
  }
  if (self->on_connected_) self->on_connected_(*self);
}

void FrameStream::start_reading() {
  read_buffer_.resize(read_chunk);
  uv_read_start(socket_.stream(), &FrameStream::on_alloc, &FrameStream::on_read);
}

void FrameStream::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) noexcept {
  auto* self = static_cast<FrameStream*>(handle->data);
  if (self == nullptr) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  *buf =
      uv_buf_init(reinterpret_cast<char*>(self->read_buffer_.data()), static_cast<unsigned>(self->read_buffer_.size()));
}

void FrameStream::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* self = static_cast<FrameStream*>(stream->data);
  if (self == nullptr) return;
  if (nread < 0) {
    self->fail(nread == UV_EOF ? "closed by peer" : std::string("read: ") + uv_strerror(static_cast<int>(nread)));
    return;
  }
  if (nread == 0) return;
  self->last_read_ns_ = uv_hrtime();
  std::shared_ptr<bool> alive = self->alive_;
  std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
  if (self->noise_) {
    if (!self->feed_secured(bytes)) return;
  } else {
    self->reader_.feed(bytes);
  }
  while (*alive && self->open_) {
    auto next = self->reader_.next();
    if (!next) {
      self->fail(migrate::frame_error_name(next.error()));
      return;
    }
    if (!next.value()) return;
    try {
      self->on_frame_(*self, std::move(*next.value()));
    } catch (const std::exception& e) {
      logger("control")->error("frame handler threw: {}", e.what());
      self->fail("internal error");
      return;
    }
  }
}

void FrameStream::send(migrate::FrameType type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> frame;
  migrate::append_frame(type, payload, frame);
  send_frame(std::move(frame));
}

void FrameStream::send_frame(std::vector<uint8_t> frame) {
  if (!open_) return;
  if (noise_) {
    if (!noise_->established() || !authenticated_) {
      unsent_plaintext_.insert(unsent_plaintext_.end(), frame.begin(), frame.end());
      return;
    }
    std::vector<uint8_t> sealed;
    sealed.reserve(frame.size() + frame.size() / crypto::noise_stream_max_plaintext * 18 + 18);
    if (!noise_->seal(frame, sealed)) {
      fail("cannot seal a frame");
      return;
    }
    frame = std::move(sealed);
  }
  write_bytes(std::move(frame));
}

void FrameStream::write_bytes(std::vector<uint8_t> bytes) {
  if (!open_) return;
  auto* write = new Write{{}, std::move(bytes), this, alive_};
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(write->bytes.data()), static_cast<unsigned>(write->bytes.size()));
  if (uv_write(&write->request, socket_.stream(), &buf, 1, &FrameStream::on_written) != 0) {
    delete write;
    fail("write failed");
    return;
  }
  ++writes_in_flight_;
}

void FrameStream::send(migrate::FrameType type, std::string_view text) {
  send(type, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

void FrameStream::on_written(uv_write_t* raw, int status) noexcept {
  std::unique_ptr<Write> write(reinterpret_cast<Write*>(raw));
  if (!*write->alive) return;
  FrameStream* self = write->stream;
  --self->writes_in_flight_;
  if (status != 0) {
    self->fail(std::string("write: ") + uv_strerror(status));
    return;
  }
  if (self->close_when_drained_ && self->writes_in_flight_ == 0) self->fail("closed");
}

void FrameStream::rebind(FrameFn on_frame, ClosedFn on_closed) {
  on_frame_ = std::move(on_frame);
  on_closed_ = std::move(on_closed);
}

bool FrameStream::keepalive(unsigned idle_seconds) {
  keepalive_seconds_ = idle_seconds;
  // Before the connect completes it is applied then (on_connect).
  return !open_ || (socket_.valid() && uv_tcp_keepalive(socket_.get(), 1, idle_seconds) == 0);
}

void FrameStream::close_after_writes() {
  close_when_drained_ = true;
  if (writes_in_flight_ == 0) fail("closed");
}

void FrameStream::fail(const std::string& reason) {
  if (open_ && socket_.valid()) uv_read_stop(socket_.stream());
  open_ = false;
  if (closed_reported_) return;
  closed_reported_ = true;
  if (on_closed_) on_closed_(*this, reason);  // may destroy *this: nothing after it
}

}  // namespace roam
