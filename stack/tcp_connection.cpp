#include "stack/tcp_connection.hpp"

#include <algorithm>
#include <cstring>
#include <random>

#include "stack/connection_id.hpp"
#include "stack/local_port_allocator.hpp"
#include "stack/lwip_address.hpp"
#include "base/log.hpp"

namespace roam {

namespace {
// tcp_write and tcp_recved take 16-bit lengths (DESIGN section 8).
constexpr size_t max_lwip_chunk = 0xFFFF;

// Scope guard marking that lwIP is calling us.
class CallbackScope {
 public:
  explicit CallbackScope(bool& flag) : flag_(flag) { flag_ = true; }
  ~CallbackScope() { flag_ = false; }

 private:
  bool& flag_;
};

// Local ports of active opens: one allocator per process (lwIP is one per process too).
// The lease rides in its own ext arg slot as handle << 16 | port (never 0: ports are
// above 0), released by the slot's destroy callback when lwIP frees the pcb, which for a
// closed connection is after TIME_WAIT, as the kernel holds a port.
LocalPortAllocator& local_ports() {
  static auto* ports = new LocalPortAllocator(LocalPortAllocator::default_first, LocalPortAllocator::default_last,
                                              std::random_device{}());
  return *ports;
}

void on_port_pcb_destroyed(u8_t /*slot_id*/, void* data) noexcept {
  auto value = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(data));
  if (value != 0) local_ports().release({static_cast<uint32_t>(value >> 16), static_cast<uint16_t>(value & 0xFFFF)});
}
const tcp_ext_arg_callbacks port_slot_callbacks{&on_port_pcb_destroyed, nullptr};

uint8_t port_slot() {
  static const uint8_t id = tcp_ext_arg_alloc_id();
  return id;
}

bool take_local_port(tcp_pcb* pcb, const IpAddress& remote, uint16_t remote_port) {
  auto lease = local_ports().acquire(remote, remote_port);
  if (!lease) return false;
  uint64_t value = uint64_t{lease->destination} << 16 | lease->port;
  tcp_ext_arg_set(pcb, port_slot(), reinterpret_cast<void*>(static_cast<uintptr_t>(value)));
  tcp_ext_arg_set_callbacks(pcb, port_slot(), &port_slot_callbacks);
  pcb->local_port = lease->port;
  return true;
}
}  // namespace

size_t local_port_range_size() {
  return local_ports().range_size();
}

size_t local_ports_in_use() {
  return local_ports().leases();
}

TcpConnection::TcpConnection(tcp_pcb* pcb, Handler* handler) : pcb_(pcb), handler_(handler) {
  install_callbacks();
}

TcpConnection::~TcpConnection() {
  close();
}

Result<std::unique_ptr<TcpConnection>, std::string> TcpConnection::connect(const IpAddress& remote, uint16_t port,
                                                                           Handler* handler, const IpAddress* local,
                                                                           std::shared_ptr<const SynOptionSource> syn_option) {
  ip_addr_t remote_ip = to_lwip(remote);
  tcp_pcb* pcb = tcp_new_ip_type(remote.version == 4 ? IPADDR_TYPE_V4 : IPADDR_TYPE_V6);
  if (pcb == nullptr) return unexpected(std::string("out of memory for a pcb"));
  auto connection = std::make_unique<TcpConnection>(pcb, handler);
  // The local port comes from our per-destination allocator, set in the pcb as an import
  // does, not through tcp_bind (which walks every pcb list per call) or tcp_connect's
  // tcp_new_port (a walk per candidate port, one range for every destination). Without a
  // bound port tcp_connect takes it as it is; the lease ends when lwIP frees the pcb.
  if (!take_local_port(pcb, remote, port)) {
    connection->abort();
    return unexpected("no free local port toward " + remote.to_string() + ":" + std::to_string(port) + " (all " +
                      std::to_string(local_port_range_size()) + " in use toward it)");
  }
  if (local != nullptr) pcb->local_ip = to_lwip(*local);
  tcp_nagle_disable(pcb);  // a relay forwards what it has at once; the app decides batching
  arm_syn_option(pcb, std::move(syn_option));  // before tcp_connect sizes the SYN
  err_t rc = tcp_connect(pcb, &remote_ip, port, &TcpConnection::on_connected_trampoline);
  if (rc != ERR_OK) {
    connection->abort();
    return unexpected(std::string("tcp_connect: ") + lwip_error_name(rc));
  }
  return connection;
}

void TcpConnection::install_callbacks() {
  tcp_arg(pcb_, this);
  tcp_recv(pcb_, &TcpConnection::on_recv_trampoline);
  tcp_sent(pcb_, &TcpConnection::on_sent_trampoline);
  tcp_err(pcb_, &TcpConnection::on_err_trampoline);
}

void TcpConnection::detach() {
  if (pcb_ == nullptr) return;
  tcp_arg(pcb_, nullptr);
  tcp_recv(pcb_, nullptr);
  tcp_sent(pcb_, nullptr);
  tcp_err(pcb_, nullptr);
  tcp_poll(pcb_, nullptr, 0);
}

// pcb->snd_buf, not tcp_sndbuf(): with window scaling that macro clamps to 65535.
size_t TcpConnection::send_space() const {
  return pcb_ == nullptr ? 0 : pcb_->snd_buf;
}

size_t TcpConnection::write(std::span<const uint8_t> bytes) {
  size_t written = 0;
  while (pcb_ != nullptr && written < bytes.size()) {
    size_t space = std::min<size_t>(pcb_->snd_buf, max_lwip_chunk);
    // Also bounded by the segment queue length: lwIP refuses writes beyond it.
    if (space == 0 || tcp_sndqueuelen(pcb_) >= TCP_SND_QUEUELEN - 4) break;
    size_t chunk = std::min(space, bytes.size() - written);
    u8_t flags = TCP_WRITE_FLAG_COPY;
    if (written + chunk < bytes.size()) flags |= TCP_WRITE_FLAG_MORE;
    err_t rc = tcp_write(pcb_, bytes.data() + written, static_cast<u16_t>(chunk), flags);
    if (rc == ERR_MEM) break;  // queue full for now; on_sent will bring more space
    if (rc != ERR_OK) {
      logger("tcp")->debug("{}: tcp_write: {}", describe(), lwip_error_name(rc));
      break;
    }
    written += chunk;
  }
  return written;
}

tcp_pcb* TcpConnection::release() {
  detach();
  tcp_pcb* pcb = pcb_;
  pcb_ = nullptr;
  return pcb;
}

void TcpConnection::flush() {
  if (pcb_ != nullptr) tcp_output(pcb_);
}

void TcpConnection::consumed(size_t bytes) {
  while (pcb_ != nullptr && bytes > 0) {
    size_t chunk = std::min(bytes, max_lwip_chunk);
    tcp_recved(pcb_, static_cast<u16_t>(chunk));
    bytes -= chunk;
  }
}

void TcpConnection::shutdown_write() {
  if (pcb_ == nullptr) return;
  err_t rc = tcp_shutdown(pcb_, 0, 1);
  if (rc != ERR_OK) logger("tcp")->debug("{}: tcp_shutdown: {}", describe(), lwip_error_name(rc));
  tcp_output(pcb_);
}

void TcpConnection::close() {
  if (pcb_ == nullptr) return;
  tcp_pcb* pcb = pcb_;
  detach();
  pcb_ = nullptr;
  if (tcp_close(pcb) != ERR_OK) {
    // Out of memory for the FIN: reset instead, the only other way to let go of the pcb.
    tcp_abort(pcb);
    if (in_callback_) aborted_in_callback_ = true;
  }
}

void TcpConnection::abort() {
  if (pcb_ == nullptr) return;
  tcp_pcb* pcb = pcb_;
  detach();
  pcb_ = nullptr;
  tcp_abort(pcb);
  if (in_callback_) aborted_in_callback_ = true;
}

std::string TcpConnection::describe() const {
  if (pcb_ == nullptr) return "tcp(closed)";
  char local[IPADDR_STRLEN_MAX];
  char remote[IPADDR_STRLEN_MAX];
  ipaddr_ntoa_r(&pcb_->local_ip, local, sizeof local);
  ipaddr_ntoa_r(&pcb_->remote_ip, remote, sizeof remote);
  return std::string(local) + ":" + std::to_string(pcb_->local_port) + "->" + remote + ":" +
         std::to_string(pcb_->remote_port);
}

size_t TcpConnection::unsent_bytes() const {
  if (pcb_ == nullptr) return 0;
  size_t queued = TCP_SND_BUF - pcb_->snd_buf;  // unacked + unsent, whatever the flags
  size_t in_flight = pcb_->snd_nxt - pcb_->lastack;
  return queued > in_flight ? queued - in_flight : 0;
}

bool TcpConnection::everything_acknowledged() const {
  return pcb_ == nullptr || (pcb_->unsent == nullptr && pcb_->unacked == nullptr);
}

err_t TcpConnection::on_recv_trampoline(void* arg, tcp_pcb* pcb, pbuf* p, err_t /*err*/) noexcept {
  auto* self = static_cast<TcpConnection*>(arg);
  if (self == nullptr || self->handler_ == nullptr) {
    // Nobody owns this pcb any more: refuse the data so lwIP keeps it (and the window shut).
    if (p != nullptr) return ERR_MEM;
    return ERR_OK;
  }
  (void)pcb;
  CallbackScope scope(self->in_callback_);
  self->aborted_in_callback_ = false;
  try {
    if (p == nullptr) {
      self->handler_->on_remote_closed(*self);
    } else {
      self->handler_->on_data(*self, PbufPtr(p));
    }
  } catch (const std::exception& e) {
    logger("tcp")->error("{}: handler threw: {}; aborting", self->describe(), e.what());
    self->abort();
  } catch (...) {
    self->abort();
  }
  return self->aborted_in_callback_ ? ERR_ABRT : ERR_OK;
}

err_t TcpConnection::on_sent_trampoline(void* arg, tcp_pcb* /*pcb*/, u16_t len) noexcept {
  auto* self = static_cast<TcpConnection*>(arg);
  if (self == nullptr || self->handler_ == nullptr) return ERR_OK;
  CallbackScope scope(self->in_callback_);
  self->aborted_in_callback_ = false;
  try {
    self->handler_->on_sent(*self, len);
  } catch (...) {
    self->abort();
  }
  return self->aborted_in_callback_ ? ERR_ABRT : ERR_OK;
}

err_t TcpConnection::on_connected_trampoline(void* arg, tcp_pcb* pcb, err_t /*err*/) noexcept {
  if (pcb != nullptr) assign_connection_id_at_connected(pcb);
  auto* self = static_cast<TcpConnection*>(arg);
  if (self == nullptr || self->handler_ == nullptr) return ERR_OK;
  CallbackScope scope(self->in_callback_);
  self->aborted_in_callback_ = false;
  try {
    self->handler_->on_connected(*self);
  } catch (...) {
    self->abort();
  }
  return self->aborted_in_callback_ ? ERR_ABRT : ERR_OK;
}

void TcpConnection::on_err_trampoline(void* arg, err_t err) noexcept {
  auto* self = static_cast<TcpConnection*>(arg);
  if (self == nullptr) return;
  self->pcb_ = nullptr;  // lwIP already freed it
  if (self->handler_ == nullptr) return;
  try {
    self->handler_->on_error(*self, err);
  } catch (...) {
    logger("tcp")->error("handler threw from on_error");
  }
}

}  // namespace roam
