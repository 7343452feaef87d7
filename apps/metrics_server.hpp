// MetricsServer: the Prometheus endpoint (`--metrics [IP:]PORT`): a kernel TCP listener
// on the node's libuv loop answering `GET /metrics` with metrics_text (HTTP/1.0, one
// request per connection). Bounded: a request is at most 4 KiB, at most 16 connections
// are open (more are accepted and closed at once), and a connection is closed 5 s after it
// was accepted whatever it sent. Bad requests get 400, other paths 404; both, the refused
// and the timed-out connections are counted in its own registry (group "metrics"), which
// it serves too. Nothing here changes the node. Loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "base/counters.hpp"
#include "base/uv_handle.hpp"

namespace roam {

struct MetricsCounters {
  uint64_t requests = 0;
  uint64_t bad_requests = 0;
  uint64_t not_found = 0;
  uint64_t refused_over_cap = 0;
  uint64_t timed_out = 0;
};

class MetricsServer {
 public:
  static constexpr size_t max_request_bytes = 4096;
  static constexpr size_t max_connections = 16;
  static constexpr uint64_t connection_timeout_ms = 5000;

  // The body of a 200 answer, rendered per request.
  using Render = std::function<std::string()>;

  // `bind` is IP:PORT, [IPv6]:PORT, or a bare PORT for 127.0.0.1. Throws ConfigError.
  MetricsServer(uv_loop_t* loop, const std::string& bind, Render render);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  void close();
  const MetricsCounters& counters() const { return counters_; }
  const CounterRegistry& registry() const { return registry_; }
  const std::string& address() const { return address_; }

 private:
  struct Connection;
  static void on_connection(uv_stream_t* server, int status) noexcept;
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_written(uv_write_t* req, int status) noexcept;
  static void on_timeout(uv_timer_t* timer) noexcept;
  void accept();
  void received(Connection& connection);
  void respond(Connection& connection, int status, const std::string& body);
  void drop(Connection* connection);

  uv_loop_t* loop_;
  Render render_;
  std::string address_;
  UvHandle<uv_tcp_t> listener_;
  std::unordered_map<Connection*, std::unique_ptr<Connection>> connections_;
  MetricsCounters counters_;
  CounterRegistry registry_;
};

}  // namespace roam
