#include "apps/metrics_server.hpp"

#include <array>

#include "apps/metrics_http.hpp"
#include "base/config_error.hpp"
#include "base/log.hpp"
#include "base/socket_address.hpp"

namespace roam {

struct MetricsServer::Connection {
  MetricsServer* server = nullptr;
  UvHandle<uv_tcp_t> tcp;
  UvHandle<uv_timer_t> timer;
  std::string request;
  std::array<char, 1024> chunk{};
  bool answered = false;
};

namespace {

// The write's request and bytes live until its callback, which may come after the
// connection is gone (a close cancels it): then the stream's data is null.
struct WriteJob {
  uv_write_t req{};
  std::string bytes;
};

bool all_digits(const std::string& text) {
  return !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
}

}  // namespace

MetricsServer::MetricsServer(uv_loop_t* loop, const std::string& bind, Render render)
    : loop_(loop), render_(std::move(render)), address_(all_digits(bind) ? "127.0.0.1:" + bind : bind) {
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!parse_socket_address(address_, address, length))
    throw ConfigError("bad --metrics '" + bind + "': expected IP:PORT, [IPv6]:PORT or PORT (127.0.0.1)");
  if (uv_tcp_init(loop_, listener_.get()) != 0) throw ConfigError("cannot create the metrics socket");
  listener_.mark_initialized();
  listener_.get()->data = this;
  int rc = uv_tcp_bind(listener_.get(), reinterpret_cast<const sockaddr*>(&address), 0);
  if (rc == 0) rc = uv_listen(listener_.stream(), 64, &MetricsServer::on_connection);
  if (rc != 0) throw ConfigError("cannot listen on --metrics " + address_ + ": " + uv_strerror(rc));
  registry_.add("metrics", "requests", &counters_.requests);
  registry_.add("metrics", "bad_requests", &counters_.bad_requests);
  registry_.add("metrics", "not_found", &counters_.not_found);
  registry_.add("metrics", "refused_over_cap", &counters_.refused_over_cap);
  registry_.add("metrics", "timed_out", &counters_.timed_out);
  registry_.add_gauge("metrics", "connections", [this] { return connections_.size(); });
  logger("app")->info("metrics on http://{}/metrics", address_);
}

MetricsServer::~MetricsServer() {
  close();
}

void MetricsServer::close() {
  if (listener_.valid()) listener_.close();
  connections_.clear();
}

void MetricsServer::on_connection(uv_stream_t* server, int status) noexcept {
  auto* self = static_cast<MetricsServer*>(server->data);
  if (self == nullptr || status != 0) return;
  self->accept();
}

void MetricsServer::accept() {
  auto connection = std::make_unique<Connection>();
  connection->server = this;
  if (uv_tcp_init(loop_, connection->tcp.get()) != 0) return;
  connection->tcp.mark_initialized();
  if (uv_accept(listener_.stream(), connection->tcp.stream()) != 0) return;
  if (connections_.size() >= max_connections) {
    ++counters_.refused_over_cap;  // closed at once by the destructor
    return;
  }
  if (uv_timer_init(loop_, connection->timer.get()) != 0) return;
  connection->timer.mark_initialized();
  Connection* raw = connection.get();
  raw->tcp.get()->data = raw;
  raw->timer.get()->data = raw;
  uv_timer_start(raw->timer.get(), &MetricsServer::on_timeout, connection_timeout_ms, 0);
  if (uv_read_start(raw->tcp.stream(), &MetricsServer::on_alloc, &MetricsServer::on_read) != 0) return;
  connections_.emplace(raw, std::move(connection));
}

void MetricsServer::on_alloc(uv_handle_t* handle, size_t /*suggested*/, uv_buf_t* buf) noexcept {
  auto* connection = static_cast<Connection*>(handle->data);
  if (connection == nullptr) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  *buf = uv_buf_init(connection->chunk.data(), static_cast<unsigned>(connection->chunk.size()));
}

void MetricsServer::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept {
  auto* connection = static_cast<Connection*>(stream->data);
  if (connection == nullptr || nread == 0) return;
  MetricsServer* self = connection->server;
  if (nread < 0) {
    // EOF or an error before a whole request: nothing to answer.
    if (!connection->answered) self->drop(connection);
    return;
  }
  if (connection->answered) return;
  connection->request.append(buf->base, static_cast<size_t>(nread));
  try {
    self->received(*connection);
  } catch (const std::exception& e) {
    logger("app")->error("metrics: {}", e.what());
    self->drop(connection);
  }
}

void MetricsServer::received(Connection& connection) {
  switch (classify_http_request(connection.request, max_request_bytes)) {
    case HttpRequestVerdict::incomplete:
      return;
    case HttpRequestVerdict::metrics:
      ++counters_.requests;
      respond(connection, 200, render_ ? render_() : std::string());
      return;
    case HttpRequestVerdict::not_found:
      ++counters_.not_found;
      respond(connection, 404, "not found: the metrics are at /metrics\n");
      return;
    case HttpRequestVerdict::bad_request:
      ++counters_.bad_requests;
      respond(connection, 400, "bad request\n");
      return;
  }
}

void MetricsServer::respond(Connection& connection, int status, const std::string& body) {
  connection.answered = true;
  uv_read_stop(connection.tcp.stream());
  auto* job = new WriteJob;
  job->bytes = http_response(status, body);
  uv_buf_t buf = uv_buf_init(job->bytes.data(), static_cast<unsigned>(job->bytes.size()));
  if (uv_write(&job->req, connection.tcp.stream(), &buf, 1, &MetricsServer::on_written) != 0) {
    delete job;
    drop(&connection);
  }
}

void MetricsServer::on_written(uv_write_t* req, int /*status*/) noexcept {
  auto* job = reinterpret_cast<WriteJob*>(req);
  auto* connection = static_cast<Connection*>(req->handle->data);
  delete job;
  // HTTP/1.0: the answer ends with the connection.
  if (connection != nullptr) connection->server->drop(connection);
}

void MetricsServer::on_timeout(uv_timer_t* timer) noexcept {
  auto* connection = static_cast<Connection*>(timer->data);
  if (connection == nullptr) return;
  ++connection->server->counters_.timed_out;
  connection->server->drop(connection);
}

void MetricsServer::drop(Connection* connection) {
  // The handles close now; their memory stays until libuv's close callbacks.
  connections_.erase(connection);
}

}  // namespace roam
