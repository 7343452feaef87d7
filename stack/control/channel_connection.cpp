#include "stack/control/channel_connection.hpp"

#include <algorithm>
#include <utility>

#include "lwip/tcp.h"
#include "stack/connection_id.hpp"
#include "stack/control/segment_mac_guard.hpp"
#include "stack/lwip_address.hpp"

namespace roam {

namespace {
// A peer that stops reading its control channel is not worth more memory than this.
constexpr size_t max_pending_bytes = 1u << 20;
// Over TCP a frame that fails authentication, or an authentic one replayed, can only be
// there because someone wrote into the byte stream (TCP's checksum catches accidents
// well enough that TLS treats a bad record MAC the same way). The peer's next bytes would
// then be misframed: close, and let the owner open a fresh channel.
bool stream_tampered(control::ChannelError error) {
  return error == control::ChannelError::forged || error == control::ChannelError::replayed;
}

}  // namespace

ChannelConnection::ChannelConnection(Node& node, std::unique_ptr<control::ControlChannel> channel, Callbacks callbacks)
    : node_(node), channel_(std::move(channel)), callbacks_(std::move(callbacks)) {}

ChannelConnection::~ChannelConnection() {
  *alive_ = false;
  if (connection_) connection_->set_handler(nullptr);
}

void ChannelConnection::attach(std::unique_ptr<TcpConnection> connection, bool established) {
  connection_ = std::move(connection);
  connection_->set_handler(this);
  if (tcp_pcb* pcb = connection_->pcb()) {
    peer_address_ = from_lwip(pcb->remote_ip);
    peer_port_ = pcb->remote_port;
    local_port_ = pcb->local_port;
  }
  if (established) on_connected(*connection_);
}

void ChannelConnection::on_connected(TcpConnection&) {
  auto first = channel_->start();  // empty for a responder
  if (!first.empty()) queue(std::move(first));
  if (channel_->failed()) end("cannot start the handshake", true);
}

bool ChannelConnection::send(const control::Message& message) {
  if (closed_ || !channel_->established()) return false;
  auto bytes = channel_->seal(message);
  if (!bytes) return false;
  queue(std::move(bytes.value()));
  return !closed_;
}

void ChannelConnection::queue(std::vector<uint8_t> bytes) {
  if (closed_) return;
  if (pending_.size() - pending_at_ + bytes.size() > max_pending_bytes) {
    end("the peer does not read its control channel", true);
    return;
  }
  if (pending_at_ == pending_.size()) {
    pending_ = std::move(bytes);
    pending_at_ = 0;
  } else {
    pending_.insert(pending_.end(), bytes.begin(), bytes.end());
  }
  pump();
}

void ChannelConnection::pump() {
  if (!connection_ || !connection_->alive()) return;
  size_t wrote = 0;
  while (pending_at_ < pending_.size()) {
    size_t n = connection_->write(std::span<const uint8_t>(pending_).subspan(pending_at_));
    if (n == 0) break;
    pending_at_ += n;
    wrote += n;
  }
  if (pending_at_ == pending_.size()) {
    pending_.clear();
    pending_at_ = 0;
  }
  if (wrote > 0) {
    connection_->flush();
    node_.kick();
  }
}

void ChannelConnection::on_data(TcpConnection& connection, PbufPtr data) {
  size_t length = data->tot_len;
  for (pbuf* q = data.get(); q != nullptr; q = q->next)
    channel_->feed(std::span<const uint8_t>(static_cast<const uint8_t*>(q->payload), q->len));
  connection.consumed(length);
  process();
}

void ChannelConnection::process() {
  auto alive = alive_;
  while (!closed_) {
    std::vector<uint8_t> replies;
    auto event = channel_->next(replies);
    if (!replies.empty()) queue(std::move(replies));
    if (!event) {
      if (callbacks_.on_bad_frame) callbacks_.on_bad_frame(*this, event.error());
      if (!*alive) return;
      if (control::channel_error_is_fatal(event.error()) || stream_tampered(event.error())) {
        end(std::string("control channel: ") + control::channel_error_name(event.error()), true);
        return;
      }
      continue;
    }
    if (!event.value()) return;  // needs more bytes
    if (event.value()->established) {
      handshake_timer_.close();
      protect_carrier();
      if (callbacks_.on_established) callbacks_.on_established(*this);
    } else if (callbacks_.on_message) {
      callbacks_.on_message(*this, event.value()->message);
    }
    if (!*alive) return;
  }
}

void ChannelConnection::on_remote_closed(TcpConnection&) {
  end("peer closed the control channel", false);
}

void ChannelConnection::on_sent(TcpConnection&, size_t) {
  pump();
}

void ChannelConnection::on_error(TcpConnection& connection, err_t error) {
  // The loss names a dead peer (keepalive, retransmission or connect timeout) or a reset.
  std::string why = connection.loss() != PeerLoss::none ? connection.loss_text() : lwip_error_name(error);
  end("control channel connection failed: " + why, false);
}

void ChannelConnection::close(const std::string& why) {
  end(why, false);
}

// From here on each end signs what it sends on this connection and drops what arrives
// unsigned or badly signed. Both switch at their own end of the handshake: the initiator
// as it sends the last message (which goes out unsigned, before this), the responder as it
// reads it; nothing else is sent on the connection in between, and a segment that crossed
// the switch unsigned is dropped and retransmitted signed.
void ChannelConnection::protect_carrier() {
  SegmentMacGuard* guard = SegmentMacGuard::on(node_);
  if (guard == nullptr || !connection_ || !connection_->alive()) return;
  if ((channel_->hello().capabilities & capability_segment_mac) == 0 ||
      (channel_->peer_hello().capabilities & capability_segment_mac) == 0)
    return;
  const tcp_pcb* pcb = connection_->pcb();
  uint64_t id = pcb != nullptr ? connection_id(pcb) : 0;
  if (id == 0) return;
  guard->protect(pcb, id, channel_->handshake_hash(),
                 channel_->role() == crypto::NoiseRole::initiator ? crypto::SegmentDirection::client_to_server
                                                                  : crypto::SegmentDirection::server_to_client);
}

void ChannelConnection::limit_handshake(uint64_t ms) {
  if (ms == 0 || closed_ || channel_->established() || handshake_timer_.get() == nullptr) return;
  if (!handshake_timer_.valid()) {
    if (uv_timer_init(node_.loop(), handshake_timer_.get()) != 0) return;
    handshake_timer_.mark_initialized();
    handshake_timer_.get()->data = this;
    uv_unref(handshake_timer_.base());  // a pending handshake alone does not keep a node running
  }
  handshake_limit_ms_ = ms;
  uv_timer_start(handshake_timer_.get(), &ChannelConnection::on_handshake_timer, ms, 0);
}

void ChannelConnection::on_handshake_timer(uv_timer_t* timer) noexcept {
  auto* self = static_cast<ChannelConnection*>(timer->data);
  if (self == nullptr || self->closed_ || self->channel_->established()) return;
  auto alive = self->alive_;
  if (self->callbacks_.on_handshake_timeout) self->callbacks_.on_handshake_timeout(*self);
  if (!*alive) return;
  self->end("no handshake within " + std::to_string(self->handshake_limit_ms_) + " ms", true);
}

void ChannelConnection::end(const std::string& why, bool reset) {
  if (closed_) return;
  closed_ = true;
  handshake_timer_.close();
  if (connection_ && connection_->alive()) {
    // Never inside the connection's own callback: lwIP may still be using the pcb.
    TcpConnection* raw = connection_.release();
    raw->set_handler(nullptr);
    node_.defer([raw, reset] {
      std::unique_ptr<TcpConnection> owned(raw);
      if (reset)
        owned->abort();
      else
        owned->close();
    });
  }
  auto callback = callbacks_.on_closed;
  if (callback)
    node_.defer([alive = alive_, this, callback, why] {
      if (*alive) callback(*this, why);
    });
}

}  // namespace roam
