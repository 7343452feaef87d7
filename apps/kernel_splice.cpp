#include "apps/kernel_splice.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>
#include <utility>

#include "base/log.hpp"

namespace roam {

namespace {
constexpr size_t kernel_read_size = 256 * 1024;
// Kernel reads pause when lwIP's free send space drops below this and resume once it is
// back above it: tcp_write walks lwIP's unsent queue (thousands of segments at a 4 MiB
// window), so small writes on every ACK would cost quadratic time.
constexpr size_t carrier_refill_step = 128 * 1024;

// The one read buffer of the process (the loop thread's): see the header.
std::span<uint8_t> shared_read_buffer() {
  static auto* buffer = new std::vector<uint8_t>(kernel_read_size);
  return *buffer;
}
}  // namespace

// One uv_write of a carrier pbuf chain, straight from lwIP's buffers (zero copy); the pbuf
// and its window credit are released when the kernel has taken the bytes.
struct KernelSplice::KernelWrite {
  uv_write_t request{};
  KernelSplice* owner = nullptr;
  uint64_t carrier = 0;  // carrier_generation_ of the carrier the bytes came from
  PbufPtr data;
  std::vector<uv_buf_t> buffers;
};

KernelSplice::KernelSplice(Node& node, FinishedFn on_finished) : node_(node), on_finished_(std::move(on_finished)) {}

KernelSplice::~KernelSplice() {
  if (carrier_) carrier_->abort();
}

void KernelSplice::adopt_kernel(UvHandle<uv_tcp_t> kernel, std::vector<uint8_t> already_read) {
  kernel_ = std::move(kernel);
  pending_to_carrier_ = std::move(already_read);
  pending_offset_ = 0;
  kernel_.get()->data = this;
  kernel_open_ = true;
  uv_tcp_nodelay(kernel_.get(), 1);
  kernel_ready_ = true;
  start_if_ready();
}

void KernelSplice::connect_kernel(const sockaddr* backend) {
  uv_tcp_init(node_.loop(), kernel_.get());
  kernel_.mark_initialized();
  kernel_.get()->data = this;
  kernel_open_ = true;
  auto* request = new uv_connect_t{};
  request->data = this;
  int rc = uv_tcp_connect(request, kernel_.get(), backend, &KernelSplice::on_kernel_connected);
  if (rc != 0) {
    delete request;
    logger("app")->warn("backend connect failed: {}", uv_strerror(rc));
    fail("backend connect failed");
  }
}

void KernelSplice::on_kernel_connected(uv_connect_t* request, int status) noexcept {
  auto* self = static_cast<KernelSplice*>(request->data);
  delete request;
  if (status == UV_ECANCELED || self->closing_) return;
  if (status != 0) {
    logger("app")->warn("backend connect failed: {}", uv_strerror(status));
    self->fail("backend unreachable");
    return;
  }
  uv_tcp_nodelay(self->kernel_.get(), 1);
  self->kernel_ready_ = true;
  self->start_if_ready();
}

void KernelSplice::adopt_carrier(std::unique_ptr<TcpConnection> carrier, bool established) {
  carrier_ = std::move(carrier);
  carrier_->set_handler(this);
  carrier_ready_ = established;
  start_if_ready();
}

void KernelSplice::on_connected(TcpConnection& carrier) {
  if (closing_) return;
  carrier_ready_ = true;
  if (on_carrier_connected_) on_carrier_connected_(carrier.pcb());
  start_if_ready();
}

void KernelSplice::start_if_ready() {
  if (started_ || closing_ || !kernel_ready_ || !carrier_ready_) return;
  started_ = true;
  auto waiting = std::move(waiting_for_kernel_);
  waiting_for_kernel_.clear();
  for (auto& data : waiting) write_to_kernel(std::move(data));
  if (pending_to_carrier_.empty())
    start_kernel_reads();
  else
    pump_to_carrier();  // starts the reads once they are sent
  maybe_shutdown_kernel();
}

void KernelSplice::start_kernel_reads() {
  if (kernel_reading_ || kernel_eof_ || closing_ || !started_) return;
  kernel_reading_ = uv_read_start(kernel_.stream(), &KernelSplice::on_kernel_alloc, &KernelSplice::on_kernel_read) == 0;
}

void KernelSplice::pause_kernel_reads() {
  if (!kernel_reading_) return;
  uv_read_stop(kernel_.stream());  // the kernel socket buffer fills and pushes back on the app
  kernel_reading_ = false;
}

void KernelSplice::on_kernel_alloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) noexcept {
  auto* self = static_cast<KernelSplice*>(handle->data);
  if (self == nullptr) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  // No more than lwIP can take now, so a read never leaves bytes behind to keep; nothing
  // (UV_ENOBUFS follows) when the carrier has no room, which pauses reading.
  std::span<uint8_t> shared = shared_read_buffer();
  size_t room = self->carrier_ ? std::min(shared.size(), self->carrier_->send_space()) : 0;
  *buf = room == 0 ? uv_buf_init(nullptr, 0)
                   : uv_buf_init(reinterpret_cast<char*>(shared.data()), static_cast<unsigned>(room));
}

void KernelSplice::on_kernel_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* self = static_cast<KernelSplice*>(stream->data);
  if (self == nullptr || self->closing_ || nread == 0) return;
  if (nread > 0) {
    self->kernel_data(reinterpret_cast<const uint8_t*>(buf->base), static_cast<size_t>(nread));
    return;
  }
  if (nread == UV_ENOBUFS) {  // on_kernel_alloc found no send space: wait for on_sent
    self->pause_kernel_reads();
    return;
  }
  if (nread == UV_EOF && self->kernel_reset_pending()) {
    // libuv reports a hang-up after a short read as EOF without reading again, so a
    // reset that came right behind the data would pass on as a clean FIN.
    self->fail("kernel side reset");
    return;
  }
  if (nread == UV_EOF) {
    self->kernel_eof_ = true;
    uv_read_stop(stream);
    self->kernel_reading_ = false;
    self->pump_to_carrier();
    return;
  }
  logger("app")->debug("kernel socket read error: {}", uv_strerror(static_cast<int>(nread)));
  self->fail("kernel side reset");
}

bool KernelSplice::kernel_reset_pending() const {
  uv_os_fd_t fd;
  if (!kernel_.valid() || uv_fileno(kernel_.base(), &fd) != 0) return false;
  int error = 0;
  socklen_t length = sizeof error;
  return getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) == 0 && error == ECONNRESET;
}

void KernelSplice::kernel_data(const uint8_t* data, size_t length) {
  if (replay_.to_carrier) replay_.to_carrier({data, length});
  size_t taken = 0;
  if (pending_offset_ == pending_to_carrier_.size()) taken = carrier_->write({data, length});
  if (taken < length) {
    if (pending_offset_ == pending_to_carrier_.size()) {
      pending_to_carrier_.clear();
      pending_offset_ = 0;
    }
    pending_to_carrier_.insert(pending_to_carrier_.end(), data + taken, data + length);
    pause_kernel_reads();  // carrier full: let the kernel socket buffer fill
  } else if (carrier_->send_space() < carrier_->send_step(carrier_refill_step)) {
    pause_kernel_reads();
  }
  carrier_->flush();
}

void KernelSplice::pump_to_carrier() {
  if (closing_ || !carrier_ || !carrier_->alive()) return;
  if (pending_offset_ < pending_to_carrier_.size()) {
    std::span<const uint8_t> rest(pending_to_carrier_.data() + pending_offset_,
                                  pending_to_carrier_.size() - pending_offset_);
    pending_offset_ += carrier_->write(rest);
    if (pending_offset_ == pending_to_carrier_.size()) {
      std::vector<uint8_t>().swap(pending_to_carrier_);  // an idle splice keeps no storage
      pending_offset_ = 0;
    }
  }
  bool drained = pending_to_carrier_.empty();
  // Below the step, data is in flight and on_sent comes back here.
  if (drained && carrier_->send_space() >= carrier_->send_step(carrier_refill_step)) start_kernel_reads();
  if (drained && kernel_eof_ && !carrier_fin_sent_) {
    carrier_fin_sent_ = true;
    carrier_->shutdown_write();
  }
  carrier_->flush();
  maybe_finish();
}

void KernelSplice::on_sent(TcpConnection&, size_t /*bytes*/) {
  if (closing_) return;
  // Refill in large steps, not on every ACK: each tcp_write walks lwIP's unsent queue
  // (thousands of segments at a 4 MiB window), so a write per ACK costs quadratic time.
  bool waiting = pending_offset_ < pending_to_carrier_.size() || (started_ && !kernel_reading_ && !kernel_eof_);
  if (waiting && carrier_ && carrier_->send_space() < carrier_->send_step(carrier_refill_step)) return;
  pump_to_carrier();
}

void KernelSplice::on_data(TcpConnection& from, PbufPtr data) {
  if (closing_ || &from != carrier_.get()) return;  // dropped; the connection is going away
  if (drop_from_carrier_ > 0) {
    // A resumed relay: the kernel already has these (PROTOCOL.md 14.8.4, skip).
    const size_t dropped = static_cast<size_t>(std::min<uint64_t>(drop_from_carrier_, data->tot_len));
    drop_from_carrier_ -= dropped;
    carrier_->consumed(dropped);
    if (dropped == data->tot_len) return;
    data = PbufPtr(pbuf_free_header(data.release(), static_cast<u16_t>(dropped)));
    if (!data) return;
  }
  if (replay_.from_carrier) replay_.from_carrier(data->tot_len);
  if (!started_) {
    waiting_for_kernel_.push_back(std::move(data));
    return;
  }
  write_to_kernel(std::move(data));
}

void KernelSplice::write_to_kernel(PbufPtr data) {
  auto* write = new KernelWrite{};
  write->owner = this;
  write->carrier = carrier_generation_;
  for (pbuf* q = data.get(); q != nullptr; q = q->next)
    if (q->len > 0) write->buffers.push_back(uv_buf_init(static_cast<char*>(q->payload), q->len));
  write->data = std::move(data);
  write->request.data = write;
  int rc = uv_write(&write->request, kernel_.stream(), write->buffers.data(),
                    static_cast<unsigned>(write->buffers.size()), &KernelSplice::on_kernel_written);
  if (rc != 0) {
    delete write;
    fail("kernel write failed");
    return;
  }
  ++kernel_writes_in_flight_;
}

void KernelSplice::on_kernel_written(uv_write_t* request, int status) noexcept {
  auto* write = static_cast<KernelWrite*>(request->data);
  KernelSplice* self = write->owner;
  size_t length = write->data ? write->data->tot_len : 0;
  // Bytes of a carrier replaced meanwhile (replace_carrier) reopen nothing: the new carrier
  // never delivered them.
  if (write->carrier != self->carrier_generation_) length = 0;
  delete write;  // frees the pbuf
  --self->kernel_writes_in_flight_;
  if (self->closing_) {
    if (self->kernel_writes_in_flight_ == 0 && self->teardown_scheduled_) self->maybe_finish();
    return;
  }
  if (status != 0) {
    logger("app")->debug("kernel socket write error: {}", uv_strerror(status));
    self->fail("kernel side closed");
    return;
  }
  if (self->carrier_) {
    self->carrier_->consumed(length);  // the kernel took them: reopen the carrier window
    self->carrier_->flush();
  }
  self->maybe_shutdown_kernel();
}

void KernelSplice::on_remote_closed(TcpConnection&) {
  if (closing_) return;
  carrier_eof_ = true;
  maybe_shutdown_kernel();
}

void KernelSplice::maybe_shutdown_kernel() {
  if (!carrier_eof_ || !started_ || kernel_shutdown_sent_ || kernel_writes_in_flight_ > 0 || closing_) return;
  kernel_shutdown_sent_ = true;
  auto* request = new uv_shutdown_t{};
  request->data = this;
  if (uv_shutdown(request, kernel_.stream(), &KernelSplice::on_kernel_shutdown) != 0) {
    delete request;
    kernel_shutdown_done_ = true;
    maybe_finish();
  }
}

void KernelSplice::on_kernel_shutdown(uv_shutdown_t* request, int /*status*/) noexcept {
  auto* self = static_cast<KernelSplice*>(request->data);
  delete request;
  self->kernel_shutdown_done_ = true;
  self->maybe_finish();
}

void KernelSplice::on_error(TcpConnection& carrier, err_t error) {
  // The pcb is gone (reset by the peer, refused, or the peer is dead: carrier.loss()).
  logger("app")->debug("carrier failed: {} ({})", carrier.loss_text(), lwip_error_name(error));
  if (closing_ || &carrier != carrier_.get()) return;
  if (replay_.carrier_lost) {
    // Kept for a resume: the dead carrier stays in carrier_ (no room, no writes) until
    // replace_carrier or close.
    pause_kernel_reads();
    replay_.carrier_lost();
    return;
  }
  if (auto lost = std::exchange(on_carrier_lost_, nullptr)) lost(carrier);
  teardown(true);
}

void KernelSplice::replace_carrier(std::unique_ptr<TcpConnection> carrier, std::vector<uint8_t> first, uint64_t drop,
                                   std::span<const uint8_t> early, bool early_fin) {
  if (closing_) return;
  if (carrier_ && carrier_->alive()) carrier_->abort();  // it leads to a proxy that lost the session
  carrier_ = std::move(carrier);
  ++carrier_generation_;
  carrier_->set_handler(this);
  carrier_ready_ = true;
  // Everything read from the kernel and not yet sent is inside `first`.
  pending_to_carrier_ = std::move(first);
  pending_offset_ = 0;
  carrier_fin_sent_ = false;
  drop_from_carrier_ = drop;
  while (!early.empty()) {
    const size_t n = std::min<size_t>(early.size(), 32 * 1024);
    PbufPtr copy(pbuf_alloc(PBUF_RAW, static_cast<u16_t>(n), PBUF_RAM));
    if (!copy) {
      fail("no memory for a resumed carrier's first bytes");
      return;
    }
    pbuf_take(copy.get(), early.data(), static_cast<u16_t>(n));
    early = early.subspan(n);
    on_data(*carrier_, std::move(copy));
  }
  if (early_fin) on_remote_closed(*carrier_);
  if (!started_) {
    start_if_ready();
    return;
  }
  pump_to_carrier();
}

void KernelSplice::maybe_finish() {
  if (closing_) {
    if (teardown_scheduled_ && kernel_writes_in_flight_ == 0 && !kernel_open_) finish_teardown();
    return;
  }
  bool outbound_done = kernel_eof_ && carrier_fin_sent_;
  bool inbound_done = carrier_eof_ && kernel_shutdown_done_;
  if (outbound_done && inbound_done) teardown(false);
}

void KernelSplice::fail(const char* why) {
  if (closing_) return;
  logger("app")->debug("splice reset: {}", why);
  teardown(true);
}

void KernelSplice::close() {
  teardown(!(kernel_eof_ && carrier_eof_));
}

void KernelSplice::teardown(bool reset) {
  if (closing_) return;
  closing_ = true;
  // Let go of the pcb outside any lwIP callback that may be running now.
  node_.defer([this, reset] {
    if (carrier_) {
      // lwIP answers tcp_close with RST while received bytes are unconsumed; a reset
      // teardown says so on purpose.
      if (reset)
        carrier_->abort();
      else
        carrier_->close();
    }
    if (kernel_.valid()) {
      if (reset) {
        // SO_LINGER 0 turns the close into an RST, telling the kernel app the stream broke.
        uv_os_fd_t fd;
        if (uv_fileno(kernel_.base(), &fd) == 0) {
          linger option{1, 0};
          setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, sizeof option);
        }
      }
      kernel_.close(&KernelSplice::on_kernel_closed, this);
    }
    teardown_scheduled_ = true;
    maybe_finish();
  });
  node_.kick();
}

void KernelSplice::on_kernel_closed(uv_handle_t* handle) noexcept {
  auto* self = static_cast<KernelSplice*>(handle->data);
  self->kernel_open_ = false;
  self->maybe_finish();
}

void KernelSplice::finish_teardown() {
  if (!on_finished_) return;
  auto finished = std::move(on_finished_);
  on_finished_ = nullptr;
  finished(this);
}

}  // namespace roam
