#include "stack/tcp_connection.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>

#include <uv.h>

#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/flow_key.hpp"
#include "stack/local_port_allocator.hpp"
#include "stack/lwip_address.hpp"
#include "stack/pcb_state_text.hpp"
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

bool& process_send_buffer_autotune() {
  static bool on = true;
  return on;
}

bool& process_receive_buffer_autotune() {
  static bool on = true;
  return on;
}

DeadPeerPolicy& process_dead_peer_policy() {
  static DeadPeerPolicy policy;
  return policy;
}

constexpr size_t peer_loss_kinds = static_cast<size_t>(PeerLoss::aborted) + 1;
std::array<uint64_t, peer_loss_kinds>& loss_counters() {
  static std::array<uint64_t, peer_loss_kinds> counters{};
  return counters;
}

// lwIP's poll interval counts slow-timer ticks in a u8.
u8_t poll_ticks(const DeadPeerPolicy& policy) {
  uint32_t ticks = policy.poll_interval_ms() / TCP_SLOW_INTERVAL;
  return static_cast<u8_t>(std::clamp<uint32_t>(ticks, 1, 255));
}

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

TcpConnection::TcpConnection(tcp_pcb* pcb, Handler* handler)
    : pcb_(pcb),
      handler_(handler),
      autotune_(process_send_buffer_autotune()),
      receive_autotune_(process_receive_buffer_autotune()) {
  // An accepted (or imported) pcb is synchronized; a fresh one for connect() is CLOSED.
  connected_ = pcb->state != CLOSED && pcb->state != SYN_SENT;
  note_remote();
  install_callbacks();
  if (connected_) start_receive_window();
}

void TcpConnection::set_dead_peer_policy(const DeadPeerPolicy& policy) {
  process_dead_peer_policy() = policy;
}

const DeadPeerPolicy& TcpConnection::dead_peer_policy() {
  return process_dead_peer_policy();
}

void TcpConnection::set_send_buffer_autotune(bool on) {
  process_send_buffer_autotune() = on;
}

bool TcpConnection::send_buffer_autotune() {
  return process_send_buffer_autotune();
}

void TcpConnection::set_receive_buffer_autotune(bool on) {
  process_receive_buffer_autotune() = on;
}

bool TcpConnection::receive_buffer_autotune() {
  return process_receive_buffer_autotune();
}

size_t TcpConnection::receive_window_limit() const {
  return receive_autotune_ ? receive_tuner_.window() : TCP_WND;
}

void TcpConnection::start_receive_window() {
  if (!receive_autotune_ || pcb_ == nullptr) return;
  size_t max = TCP_WND_MAX(pcb_);
  // Where this pcb already is: bytes lwIP counts as unread (an imported connection's,
  // which its app consumes later) and the window the peer was told of. The host it came
  // from allowed that much, so the tuned window starts there (a move carries it this way).
  size_t held = max > pcb_->rcv_wnd ? max - pcb_->rcv_wnd : 0;
  auto announced = static_cast<int32_t>(pcb_->rcv_ann_right_edge - pcb_->rcv_nxt);
  size_t open = announced > 0 ? static_cast<size_t>(announced) : 0;
  receive_tuner_.raise_to(held + open);
  size_t window = receive_tuner_.window();
  size_t target = max > window ? max - window : 0;
  // Only what lies beyond the announced right edge can be taken back (RFC 9293 3.8.6:
  // the edge never moves left); the rest comes from consumed() later.
  size_t takeable = pcb_->rcv_wnd > open ? pcb_->rcv_wnd - open : 0;
  size_t take = std::min(target > withheld_ ? target - withheld_ : 0, takeable);
  pcb_->rcv_wnd = static_cast<tcpwnd_size_t>(pcb_->rcv_wnd - take);
  pcb_->rcv_ann_wnd = std::min(pcb_->rcv_ann_wnd, pcb_->rcv_wnd);
  withheld_ += take;
}

void TcpConnection::give_window(size_t bytes) {
  while (pcb_ != nullptr && bytes > 0) {
    size_t chunk = std::min(bytes, max_lwip_chunk);
    tcp_recved(pcb_, static_cast<u16_t>(chunk));
    bytes -= chunk;
  }
}

void TcpConnection::return_withheld() {
  if (pcb_ == nullptr || withheld_ == 0) return;
  size_t max = TCP_WND_MAX(pcb_);
  pcb_->rcv_wnd = static_cast<tcpwnd_size_t>(std::min(max, pcb_->rcv_wnd + withheld_));
  withheld_ = 0;
}

void book_syn_window(tcp_pcb* pcb) {
  uint32_t told = pcb->rcv_nxt + std::min<uint32_t>(pcb->rcv_ann_wnd, 0xFFFF);
  if (static_cast<int32_t>(pcb->rcv_ann_right_edge - told) > 0) pcb->rcv_ann_right_edge = told;
}

// tcp_ticks count slow-timer ticks and wrap as u32.
uint64_t pcb_silent_ms(const tcp_pcb* pcb) {
  return uint64_t{static_cast<uint32_t>(tcp_ticks - pcb->tmr)} * TCP_SLOW_INTERVAL;
}

uint64_t peer_losses(PeerLoss reason) {
  return loss_counters()[static_cast<size_t>(reason)];
}

std::string peer_losses_text() {
  std::string out;
  for (PeerLoss reason : {PeerLoss::reset_by_peer, PeerLoss::refused, PeerLoss::connect_timeout,
                          PeerLoss::keepalive_timeout, PeerLoss::retransmission_timeout}) {
    if (!out.empty()) out += ", ";
    out += fmt::format("{} {}", peer_loss_name(reason), peer_losses(reason));
  }
  return out;
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
  connection->note_remote();
  return connection;
}

void TcpConnection::install_callbacks() {
  tcp_arg(pcb_, this);
  tcp_recv(pcb_, &TcpConnection::on_recv_trampoline);
  tcp_sent(pcb_, &TcpConnection::on_sent_trampoline);
  tcp_err(pcb_, &TcpConnection::on_err_trampoline);
  const DeadPeerPolicy& policy = dead_peer_policy();
  if (policy.active()) tcp_poll(pcb_, &TcpConnection::on_poll_trampoline, poll_ticks(policy));
}

void TcpConnection::note_remote() {
  if (pcb_ == nullptr) return;
  remote_ = from_lwip(pcb_->remote_ip);
  remote_port_ = pcb_->remote_port;
}

void TcpConnection::lose(PeerLoss loss) {
  loss_ = loss;
  ++loss_counters()[static_cast<size_t>(loss)];
}

std::string TcpConnection::peer() const {
  return endpoint_string(remote_, remote_port_);
}

std::string TcpConnection::loss_text() const {
  switch (loss_) {
    case PeerLoss::keepalive_timeout:
    case PeerLoss::retransmission_timeout:
      return fmt::format("{} (nothing heard for {:.1f} s)", peer_loss_name(loss_),
                         static_cast<double>(silent_ms_) / 1000.0);
    case PeerLoss::connect_timeout:
      if (silent_ms_ == 0) return "connect timeout (no answer to the SYN after lwIP's retries)";
      return fmt::format("connect timeout (no answer to the SYN in {:.1f} s)", static_cast<double>(silent_ms_) / 1000.0);
    case PeerLoss::refused:
      return "refused (RST in answer to the SYN: nothing listens there)";
    default:
      return peer_loss_name(loss_);
  }
}

void TcpConnection::detach() {
  if (pcb_ == nullptr) return;
  tcp_arg(pcb_, nullptr);
  tcp_recv(pcb_, nullptr);
  tcp_sent(pcb_, nullptr);
  tcp_err(pcb_, nullptr);
  tcp_poll(pcb_, nullptr, 0);
}

size_t TcpConnection::send_buffer_limit() const {
  return autotune_ ? send_tuner_.limit() : TCP_SND_BUF;
}

// pcb->snd_buf, not tcp_sndbuf(): with window scaling that macro clamps to 65535.
size_t TcpConnection::send_space() const {
  if (pcb_ == nullptr) return 0;
  size_t queued = TCP_SND_BUF - pcb_->snd_buf;  // unacked + unsent
  size_t limit = send_buffer_limit();
  return limit > queued ? std::min<size_t>(pcb_->snd_buf, limit - queued) : 0;
}

size_t TcpConnection::write(std::span<const uint8_t> bytes) {
  size_t written = 0;
  while (pcb_ != nullptr && written < bytes.size()) {
    size_t space = std::min<size_t>(send_space(), max_lwip_chunk);
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
  // Whoever takes the pcb over sees lwIP's own accounting: rcv_wnd short only by unread bytes.
  return_withheld();
  detach();
  tcp_pcb* pcb = pcb_;
  pcb_ = nullptr;
  return pcb;
}

void TcpConnection::flush() {
  if (pcb_ == nullptr) return;
  u32_t before = pcb_->snd_nxt;
  tcp_output(pcb_);
  // Data that left just now: its first segment is a round-trip sample for the send-buffer
  // tuner (the burst's later bytes wait behind it).
  if (autotune_ && pcb_->snd_nxt != before) {
    u32_t first = std::min<u32_t>(pcb_->snd_nxt - before, pcb_->mss);
    send_tuner_.on_transmitted(before + first, uv_hrtime());
  }
}

void TcpConnection::consumed(size_t bytes) {
  if (pcb_ == nullptr) return;
  if (!receive_autotune_) {
    give_window(bytes);
    return;
  }
  if (autotune_) receive_tuner_.note_rtt(send_tuner_.min_rtt_ns());
  receive_tuner_.on_consumed(bytes, uv_hrtime());
  // Credit lwIP gets: the consumed bytes, less what the tuned window withholds (more when
  // the window just grew; less while a start above the announced edge is paid off).
  size_t max = TCP_WND_MAX(pcb_);
  size_t window = receive_tuner_.window();
  size_t target = max > window ? max - window : 0;
  size_t total = withheld_ + bytes;
  withheld_ = std::min(total, target);
  give_window(total - withheld_);
  if (pcb_ == nullptr) return;
  // lwIP announces a window update on its own only once the edge moved by
  // TCP_WND_UPDATE_THRESHOLD (about 254 KiB), which a 64 KiB window never does: the
  // sender would wait for a delayed ACK. A quarter of the tuned window is worth a segment,
  // while the peer may still send (no FIN from it yet): an update to a peer that closed
  // is useless, and one from TIME_WAIT to a peer that already let go draws a RST.
  bool peer_may_send = pcb_->state == ESTABLISHED || pcb_->state == FIN_WAIT_1 || pcb_->state == FIN_WAIT_2;
  auto growth = static_cast<int32_t>(pcb_->rcv_nxt + pcb_->rcv_ann_wnd - pcb_->rcv_ann_right_edge);
  if (peer_may_send && growth > 0 && static_cast<size_t>(growth) >= window / 4) {
    tcp_ack_now(pcb_);
    tcp_output(pcb_);
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
  // lwIP answers a close with a window short of TCP_WND by RST ("unread data").
  return_withheld();
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
  CallbackScope scope(self->in_callback_);
  self->aborted_in_callback_ = false;
  try {
    if (p == nullptr) {
      self->handler_->on_remote_closed(*self);
    } else {
      if (self->receive_autotune_) self->receive_tuner_.on_received(pcb->rcv_nxt, pcb->rcv_ann_right_edge, uv_hrtime());
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

err_t TcpConnection::on_sent_trampoline(void* arg, tcp_pcb* pcb, u16_t len) noexcept {
  auto* self = static_cast<TcpConnection*>(arg);
  if (self == nullptr || self->handler_ == nullptr) return ERR_OK;
  if (self->autotune_) self->send_tuner_.on_acked(pcb->lastack, len, uv_hrtime());
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
  if (self != nullptr) {
    self->connected_ = true;
    // Before anything leaves: lwIP set rcv_wnd to TCP_WND when the SYN-ACK agreed scaling.
    if (self->pcb_ == pcb) self->start_receive_window();
  }
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
  // Our own give-up (on_poll_trampoline) detaches first, so this is lwIP's doing: a RST,
  // or its retransmission limit (TCP_MAXRTX, TCP_SYNMAXRTX) when no policy came first.
  switch (err) {
    case ERR_RST:
      self->lose(self->connected_ ? PeerLoss::reset_by_peer : PeerLoss::refused);
      break;
    case ERR_ABRT:
      self->lose(self->connected_ ? PeerLoss::retransmission_timeout : PeerLoss::connect_timeout);
      break;
    case ERR_CLSD:
      self->lose(PeerLoss::closed);
      break;
    default:
      self->lose(PeerLoss::aborted);
      break;
  }
  if (self->handler_ == nullptr) return;
  try {
    self->handler_->on_error(*self, err);
  } catch (...) {
    logger("tcp")->error("handler threw from on_error");
  }
}

// lwIP's slow timer polls every connection (tcp_poll) while a dead-peer policy is set;
// frozen and parked connections are off its lists and never polled (stack/dead_peer.hpp).
err_t TcpConnection::on_poll_trampoline(void* arg, tcp_pcb* pcb) noexcept {
  auto* self = static_cast<TcpConnection*>(arg);
  if (self == nullptr || pcb == nullptr || self->pcb_ != pcb) return ERR_OK;
  self->note_remote();
  PeerSilence seen;
  switch (pcb->state) {
    case SYN_SENT:
      seen.connecting = true;
      break;
    case ESTABLISHED:
    case CLOSE_WAIT:
    case FIN_WAIT_1:
    case FIN_WAIT_2:
    case CLOSING:
    case LAST_ACK:
      break;
    default:
      return ERR_OK;
  }
  seen.silent_ms = pcb_silent_ms(pcb);
  seen.data_outstanding = pcb->unacked != nullptr || pcb->unsent != nullptr;
  seen.probes_sent = pcb->keep_cnt_sent;  // lwIP zeroes it on every segment it takes
  PeerVerdict verdict = judge_peer(dead_peer_policy(), seen);
  if (verdict.action == PeerVerdict::Action::probe) {
    // seq = snd_nxt - 1: a live peer answers with an ACK (RFC 1122 4.2.3.6).
    if (tcp_keepalive(pcb) == ERR_OK && pcb->keep_cnt_sent < 0xFF) ++pcb->keep_cnt_sent;
    return ERR_OK;
  }
  if (verdict.action != PeerVerdict::Action::give_up) return ERR_OK;
  self->silent_ms_ = seen.silent_ms;
  self->lose(verdict.reason);
  logger("tcp")->info("{}: given up as dead ({}); its last state: {}", self->describe(), self->loss_text(),
                      pcb_state_text(pcb));
  Handler* handler = self->handler_;
  self->detach();
  self->pcb_ = nullptr;
  tcp_abort(pcb);  // RST: should the peer still be there, it learns the connection is gone
  if (handler != nullptr) {
    try {
      handler->on_error(*self, ERR_ABRT);
    } catch (...) {
      logger("tcp")->error("handler threw from on_error");
    }
  }
  return ERR_ABRT;
}

}  // namespace roam
