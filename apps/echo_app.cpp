#include "apps/echo_app.hpp"

#include "tun/log.hpp"

namespace roam {

EchoSession::EchoSession(Node& node, Mode mode, tcp_pcb* pcb, FinishedFn on_finished)
    : node_(node), mode_(mode), carrier_(std::make_unique<TcpConnection>(pcb, this)),
      on_finished_(std::move(on_finished)) {}

EchoSession::~EchoSession() = default;

void EchoSession::on_data(TcpConnection& carrier, PbufPtr data) {
  if (finishing_) return;
  size_t length = data->tot_len;
  if (mode_ == Mode::discard) {
    carrier.consumed(length);
    return;
  }
  size_t old_size = pending_.size();
  pending_.resize(old_size + length);
  pbuf_copy_partial(data.get(), pending_.data() + old_size, static_cast<u16_t>(length), 0);
  pump();
}

void EchoSession::pump() {
  if (finishing_ || !carrier_->alive()) return;
  if (pending_offset_ < pending_.size()) {
    size_t written = carrier_->write({pending_.data() + pending_offset_, pending_.size() - pending_offset_});
    pending_offset_ += written;
    carrier_->consumed(written);
    if (pending_offset_ == pending_.size()) {
      pending_.clear();
      pending_offset_ = 0;
    }
  }
  if (pending_.empty() && remote_eof_ && !fin_sent_) {
    fin_sent_ = true;
    carrier_->shutdown_write();
  }
  carrier_->flush();
  if (fin_sent_ && carrier_->unacked_bytes() == 0) finish(false);
}

void EchoSession::on_remote_closed(TcpConnection&) {
  remote_eof_ = true;
  pump();
}

void EchoSession::on_sent(TcpConnection&, size_t) { pump(); }

void EchoSession::on_error(TcpConnection&, err_t error) {
  logger("app")->debug("echo session failed: {}", lwip_error_name(error));
  finish(true);
}

void EchoSession::close() { finish(!remote_eof_); }

void EchoSession::finish(bool reset) {
  if (finishing_) return;
  finishing_ = true;
  node_.defer([this, reset] {
    if (reset) carrier_->abort(); else carrier_->close();
    if (on_finished_) {
      auto finished = std::move(on_finished_);
      on_finished_ = nullptr;
      finished(this);
    }
  });
  node_.kick();
}

}  // namespace roam
