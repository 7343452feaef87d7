#include "apps/echo_app.hpp"

#include "base/log.hpp"

namespace roam {

EchoSession::EchoSession(Node& node, Mode mode, tcp_pcb* pcb, FinishedFn on_finished)
    : node_(node),
      mode_(mode),
      carrier_(std::make_unique<TcpConnection>(pcb, this)),
      end_(node, [this, notify = std::move(on_finished)] {
        if (notify) notify(this);
      }) {}

EchoSession::~EchoSession() = default;

std::unique_ptr<EchoSession> EchoSession::import(Node& node, Mode mode, tcp_pcb* pcb, std::vector<uint8_t> received,
                                                 std::span<const uint8_t> app_state, FinishedFn on_finished,
                                                 std::string& error) {
  // Checked before the pcb is touched: on failure the importer still owns it as it was.
  if (app_state.size() != 1 || app_state[0] > 1) {
    error = "echo app state: expected one byte, 0 or 1";
    return nullptr;
  }
  auto session = std::make_unique<EchoSession>(node, mode, pcb, std::move(on_finished));
  session->remote_eof_ = app_state[0] == 1;
  session->pending_ = std::move(received);
  session->start_frozen();
  return session;
}

void EchoSession::start_frozen() {
  // Resumes on the next loop turn, once the importer has registered it everywhere; data
  // arriving meanwhile queues behind `received`.
  frozen_ = true;
  end_.resume_later([this] { thaw(); });
}

void EchoSession::on_data(TcpConnection& carrier, PbufPtr data) {
  if (end_.finishing()) return;
  size_t length = data->tot_len;
  if (mode_ == Mode::discard && !frozen_) {
    carrier.consumed(length);
    return;
  }
  append_pbuf(pending_, *data);
  pump();
}

void EchoSession::pump() {
  if (frozen_ || end_.finishing() || !carrier_->alive()) return;
  if (pending_offset_ < pending_.size()) {
    size_t written = pending_.size() - pending_offset_;
    if (mode_ == Mode::echo)
      written = carrier_->write({pending_.data() + pending_offset_, pending_.size() - pending_offset_});
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
  if (fin_sent_ && carrier_->everything_acknowledged()) finish(false);
}

void EchoSession::on_remote_closed(TcpConnection&) {
  remote_eof_ = true;
  pump();
}

void EchoSession::on_sent(TcpConnection&, size_t) {
  pump();
}

void EchoSession::on_error(TcpConnection&, err_t error) {
  // ERR_CLSD: our FIN was acknowledged after the client's (LAST_ACK done), the normal end.
  if (error != ERR_CLSD) logger("app")->debug("{} session failed: {}", kind(), lwip_error_name(error));
  finish(true);  // the pcb is gone: nothing is sent either way
}

bool EchoSession::movable() const {
  return carrier_->alive() && !end_.finishing() && !fin_sent_;
}

void EchoSession::freeze() {
  frozen_ = true;
  end_.cancel_resume();  // an imported session not yet resumed: thaw() resumes it
}

void EchoSession::thaw() {
  frozen_ = false;
  pump();  // echoes (discard: consumes) what arrived while frozen, and sends what was held
}

std::vector<uint8_t> EchoSession::received_unconsumed() const {
  return {pending_.begin() + static_cast<std::ptrdiff_t>(pending_offset_), pending_.end()};
}

std::vector<uint8_t> EchoSession::app_state() const {
  return {static_cast<uint8_t>(remote_eof_ ? 1 : 0)};
}

tcp_pcb* EchoSession::release_pcb() {
  return end_.release(*carrier_);
}

void EchoSession::close() {
  // FIN when everything received was echoed (or discarded): the stream ends truthfully.
  // Bytes still waiting to go back would be lost without a word: reset, so the client
  // knows its echo was cut short.
  bool unechoed = mode_ == Mode::echo && pending_offset_ < pending_.size();
  finish(unechoed);
}

void EchoSession::finish(bool reset) {
  end_.finish(*carrier_, reset);
}

}  // namespace roam
