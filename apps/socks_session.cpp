#include "apps/socks_session.hpp"

#include <algorithm>
#include <utility>

#include "base/log.hpp"
#include "stack/lwip_address.hpp"

namespace roam {

namespace s5 = wire::socks5;

bool SocksUsers::accepts(const std::string& user, const std::string& password) const {
  auto found = passwords.find(user);
  const std::string& want = found != passwords.end() ? found->second : std::string();
  // RFC 1929 passwords are at most 255 bytes: compare all of them whatever differs.
  unsigned diff = found == passwords.end() ? 1U : 0U;
  diff |= want.size() != password.size() ? 1U : 0U;
  for (size_t i = 0; i < 256; ++i) {
    unsigned a = i < want.size() ? static_cast<unsigned char>(want[i]) : 0U;
    unsigned b = i < password.size() ? static_cast<unsigned char>(password[i]) : 0U;
    diff |= a ^ b;
  }
  return diff == 0;
}

std::string SocksCounters::text() const {
  std::string out = "accepted " + std::to_string(accepted) + ", connected " + std::to_string(connected);
  auto add = [&out](const char* name, uint64_t value) { out += std::string(", ") + name + " " + std::to_string(value); };
  add("malformed", malformed);
  add("no_acceptable_method", no_acceptable_method);
  add("bad_credentials", bad_credentials);
  add("command_not_supported", command_not_supported);
  add("address_type_not_supported", address_type_not_supported);
  add("unresolved", unresolved);
  add("not_carried", not_carried);
  add("refused", refused);
  add("unreachable", unreachable);
  add("failed", failed);
  add("handshake_timeout", handshake_timeout);
  add("client_gone", client_gone);
  return out;
}

// One answer in flight. `owner` is set only for an answer after which the session ends;
// a cancelled write (the socket was closed) never touches it.
struct SocksSession::Write {
  uv_write_t request{};
  std::vector<uint8_t> bytes;
  SocksSession* owner = nullptr;
};

SocksSession::SocksSession(Node& node, UvHandle<uv_tcp_t> kernel, const SocksUsers& users, SocksCounters& counters,
                           Hooks hooks)
    : node_(node), kernel_(std::move(kernel)), users_(users), counters_(counters), hooks_(std::move(hooks)) {
  ++counters_.accepted;
  kernel_.get()->data = this;
  uv_tcp_nodelay(kernel_.get(), 1);
  if (uv_timer_init(node_.loop(), timer_.get()) == 0) {
    timer_.mark_initialized();
    timer_.get()->data = this;
    uv_timer_start(timer_.get(), &SocksSession::on_timeout, handshake_timeout_ms, 0);
  }
  reading_ = uv_read_start(kernel_.stream(), &SocksSession::on_alloc, &SocksSession::on_read) == 0;
  if (!reading_) {
    ++counters_.client_gone;
    node_.defer([this] { finish(); });
  }
}

SocksSession::~SocksSession() {
  if (carrier_) carrier_->abort();
}

void SocksSession::on_alloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) noexcept {
  auto* self = static_cast<SocksSession*>(handle->data);
  if (self == nullptr) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  *buf = uv_buf_init(self->read_space_.data(), static_cast<unsigned>(self->read_space_.size()));
}

void SocksSession::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* self = static_cast<SocksSession*>(stream->data);
  if (self == nullptr || nread == 0 || self->stage_ == Stage::done) return;
  if (nread < 0) {
    // The client left before the carrier was up (or before it asked for one).
    ++self->counters_.client_gone;
    self->stop_reading();
    self->finish();
    return;
  }
  try {
    auto* bytes = reinterpret_cast<const uint8_t*>(buf->base);
    self->buffer_.insert(self->buffer_.end(), bytes, bytes + nread);
    self->advance();
  } catch (const std::exception& e) {
    logger("app")->error("socks5: {}", e.what());
    self->finish();
  }
}

void SocksSession::advance() {
  while (stage_ == Stage::greeting || stage_ == Stage::credentials || stage_ == Stage::request) {
    if (stage_ == Stage::greeting) {
      auto greeting = s5::parse_greeting(buffer_);
      if (greeting.status == s5::Status::incomplete) return;
      if (greeting.status == s5::Status::malformed) {
        ++counters_.malformed;
        stop_reading();
        send({s5::version, s5::method_none_acceptable}, true);
        return;
      }
      buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<long>(greeting.consumed));
      bool password = users_.enabled();
      if (password ? !greeting.offers_password : !greeting.offers_no_auth) {
        ++counters_.no_acceptable_method;
        stop_reading();
        auto answer = s5::encode_method(s5::method_none_acceptable);
        send({answer.begin(), answer.end()}, true);
        return;
      }
      auto answer = s5::encode_method(password ? s5::method_password : s5::method_no_auth);
      send({answer.begin(), answer.end()}, false);
      stage_ = password ? Stage::credentials : Stage::request;
    } else if (stage_ == Stage::credentials) {
      auto credentials = s5::parse_credentials(buffer_);
      if (credentials.status == s5::Status::incomplete) return;
      bool accepted = credentials.status == s5::Status::ok && users_.accepts(credentials.user, credentials.password);
      if (!accepted) {
        ++(credentials.status == s5::Status::ok ? counters_.bad_credentials : counters_.malformed);
        stop_reading();
        auto answer = s5::encode_password_status(false);
        send({answer.begin(), answer.end()}, true);
        return;
      }
      buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<long>(credentials.consumed));
      auto answer = s5::encode_password_status(true);
      send({answer.begin(), answer.end()}, false);
      stage_ = Stage::request;
    } else {
      auto request = s5::parse_request(buffer_);
      if (request.status == s5::Status::incomplete) return;
      stop_reading();
      if (request.status == s5::Status::malformed) {
        ++(request.reply == s5::Reply::address_type_not_supported ? counters_.address_type_not_supported
                                                                   : counters_.malformed);
        refuse(request.reply);
        return;
      }
      if (request.command != static_cast<uint8_t>(s5::Command::connect)) {
        ++counters_.command_not_supported;
        refuse(s5::Reply::command_not_supported);
        return;
      }
      buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<long>(request.consumed));
      std::string host = request.address_type == s5::AddressType::domain ? request.name
                         : request.address.version == 6     ? "[" + request.address.to_string() + "]"
                                                            : request.address.to_string();
      destination_ = host + ":" + std::to_string(request.port);
      stage_ = Stage::connecting;
      hooks_.on_request(*this, request);
      return;
    }
  }
}

void SocksSession::send(std::vector<uint8_t> bytes, bool then_close) {
  if (!kernel_.valid()) return;
  auto* write = new Write{};
  write->bytes = std::move(bytes);
  write->owner = then_close ? this : nullptr;
  write->request.data = write;
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(write->bytes.data()), static_cast<unsigned>(write->bytes.size()));
  if (then_close) stage_ = Stage::done;
  if (uv_write(&write->request, kernel_.stream(), &buf, 1, &SocksSession::on_written) != 0) {
    delete write;
    if (then_close) finish();
  }
}

void SocksSession::on_written(uv_write_t* request, int status) noexcept {
  auto* write = static_cast<Write*>(request->data);
  SocksSession* owner = status == UV_ECANCELED ? nullptr : write->owner;
  delete write;
  if (owner != nullptr) owner->finish();
}

void SocksSession::on_timeout(uv_timer_t* timer) noexcept {
  auto* self = static_cast<SocksSession*>(timer->data);
  if (self == nullptr || self->stage_ == Stage::done) return;
  if (self->stage_ == Stage::connecting) return;  // the carrier's own connect timeout decides
  ++self->counters_.handshake_timeout;
  self->stop_reading();
  self->finish();
}

void SocksSession::stop_reading() {
  if (!reading_) return;
  uv_read_stop(kernel_.stream());
  reading_ = false;
}

void SocksSession::refuse(s5::Reply reply) {
  if (stage_ == Stage::done) return;
  logger("app")->debug("socks5 {}: {}", destination_.empty() ? "request" : destination_, s5::reply_name(reply));
  IpAddress none;
  send(s5::encode_reply(reply, none, 0), true);
}

void SocksSession::adopt_carrier(std::unique_ptr<TcpConnection> carrier) {
  carrier_ = std::move(carrier);
  carrier_->set_handler(this);
  node_.kick();
}

void SocksSession::on_connected(TcpConnection& carrier) {
  if (stage_ != Stage::connecting) return;
  stage_ = Stage::done;
  ++counters_.connected;
  // BND.ADDR/PORT: where the carrier leaves this node (our userspace address and port).
  IpAddress bound;
  uint16_t bound_port = 0;
  if (carrier.pcb() != nullptr) {
    bound = from_lwip(carrier.pcb()->local_ip);
    bound_port = carrier.pcb()->local_port;
  }
  // Queued before the splice writes anything: libuv keeps a stream's writes in order.
  auto* write = new Write{};
  write->bytes = s5::encode_reply(s5::Reply::succeeded, bound, bound_port);
  write->request.data = write;
  uv_buf_t buf = uv_buf_init(reinterpret_cast<char*>(write->bytes.data()), static_cast<unsigned>(write->bytes.size()));
  if (uv_write(&write->request, kernel_.stream(), &buf, 1, &SocksSession::on_written) != 0) delete write;
  if (timer_.valid()) uv_timer_stop(timer_.get());
  kernel_.get()->data = nullptr;
  hooks_.on_established(std::move(kernel_), std::move(buffer_), std::move(carrier_));
  finish();
}

void SocksSession::on_error(TcpConnection& carrier, err_t /*error*/) {
  if (stage_ != Stage::connecting) return;
  s5::Reply reply = s5::Reply::general_failure;
  switch (carrier.loss()) {
    case PeerLoss::refused:
      ++counters_.refused;
      reply = s5::Reply::connection_refused;
      break;
    case PeerLoss::connect_timeout:
      ++counters_.unreachable;
      reply = s5::Reply::host_unreachable;
      break;
    default:
      ++counters_.failed;
      break;
  }
  logger("app")->info("socks5 {}: carrier {}: answered {}", destination_, carrier.loss_text(),
                      s5::reply_name(reply));
  refuse(reply);
}

void SocksSession::close() {
  stage_ = Stage::done;
  stop_reading();
  finish();
}

void SocksSession::finish() {
  stage_ = Stage::done;
  if (timer_.valid()) uv_timer_stop(timer_.get());
  if (kernel_.valid()) {
    kernel_.get()->data = nullptr;
    kernel_.close();
  }
  if (auto done = std::exchange(hooks_.on_finished, nullptr)) done(this);
}

}  // namespace roam
