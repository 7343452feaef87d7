// SocksSession: the SOCKS5 handshake (RFC 1928, CONNECT only; RFC 1929 username/password
// when roam-client has --socks-auth) of one kernel connection accepted on roam-client's
// -D port, up to the moment its carrier is established. It reads the greeting, the
// credentials and the request (parsed by stack/wire/socks5), asks its owner where the
// destination goes (Hooks::on_request), waits for the carrier its owner opens, answers
// the request, and hands the kernel socket, the bytes read past the request and the
// carrier to its owner (on_established), who splices them (KernelSplice).
// Anything wrong is answered with the reply RFC 1928 names (where one exists), counted,
// and the kernel socket closed after the answer (FIN, so the answer arrives).
// Owned by the client's session table; destroyed only after on_finished. Loop thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/uv_handle.hpp"
#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"
#include "stack/wire/socks5.hpp"

namespace roam {

// --socks-auth: the accepted user names and passwords.
struct SocksUsers {
  std::unordered_map<std::string, std::string> passwords;
  bool enabled() const { return !passwords.empty(); }
  // Compares without an early exit on the first differing byte.
  bool accepts(const std::string& user, const std::string& password) const;
};

// What the -D ports did (roam-client logs them at exit).
struct SocksCounters {
  uint64_t accepted = 0;
  uint64_t connected = 0;               // answered succeeded and spliced
  uint64_t malformed = 0;               // a greeting, credentials or request no parser accepts
  uint64_t no_acceptable_method = 0;    // the client offered none of the methods we require
  uint64_t bad_credentials = 0;
  uint64_t command_not_supported = 0;   // BIND, UDP ASSOCIATE, anything else
  uint64_t address_type_not_supported = 0;
  uint64_t unresolved = 0;              // a name neither literal nor in --socks-hosts
  uint64_t not_carried = 0;             // outside every overlay route
  uint64_t refused = 0;                 // the carrier was refused
  uint64_t unreachable = 0;             // the carrier's SYN went unanswered
  uint64_t failed = 0;                  // any other failure to open the carrier
  uint64_t handshake_timeout = 0;       // the handshake did not complete in time
  uint64_t client_gone = 0;             // the local client closed during the handshake
  std::string text() const;
};

class SocksSession final : public TcpConnection::Handler {
 public:
  struct Hooks {
    // A whole CONNECT request: the owner calls refuse() or, with a carrier it opened with
    // this session as handler, adopt_carrier(). May run the session's end before returning.
    std::function<void(SocksSession&, const wire::socks5::Request&)> on_request;
    // The carrier is up and the client was answered: take the kernel socket, the bytes it
    // sent past the request and the carrier (its handler must be replaced at once).
    std::function<void(UvHandle<uv_tcp_t>, std::vector<uint8_t>, std::unique_ptr<TcpConnection>)> on_established;
    // The session is over (handed off or failed); the owner destroys it later (deferred).
    std::function<void(SocksSession*)> on_finished;
  };

  // Starts reading the greeting from `kernel` (accepted on node.loop()).
  SocksSession(Node& node, UvHandle<uv_tcp_t> kernel, const SocksUsers& users, SocksCounters& counters,
               Hooks hooks);
  ~SocksSession() override;
  SocksSession(const SocksSession&) = delete;
  SocksSession& operator=(const SocksSession&) = delete;

  // Answers the request with `reply` (a failure) and ends the session.
  void refuse(wire::socks5::Reply reply);
  // The carrier toward the destination, opened with this session as its handler.
  void adopt_carrier(std::unique_ptr<TcpConnection> carrier);
  // Closes everything now (process shutdown).
  void close();

  // The destination as the client named it ("name:port" or "address:port"), for logs.
  const std::string& destination() const { return destination_; }

  // How long the handshake may take, from accept to the request.
  static constexpr uint64_t handshake_timeout_ms = 10'000;

  // TcpConnection::Handler (the carrier while it opens)
  void on_connected(TcpConnection&) override;
  void on_data(TcpConnection&, PbufPtr) override {}
  void on_remote_closed(TcpConnection&) override {}
  void on_sent(TcpConnection&, size_t) override {}
  void on_error(TcpConnection&, err_t) override;

 private:
  enum class Stage { greeting, credentials, request, connecting, done };
  struct Write;
  static void on_alloc(uv_handle_t* handle, size_t suggested, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept;
  static void on_written(uv_write_t* request, int status) noexcept;
  static void on_timeout(uv_timer_t* timer) noexcept;

  void advance();
  // Writes `bytes`; with `then_close` the session ends once they were written.
  void send(std::vector<uint8_t> bytes, bool then_close);
  void stop_reading();
  void finish();

  Node& node_;
  UvHandle<uv_tcp_t> kernel_;
  UvHandle<uv_timer_t> timer_;
  const SocksUsers& users_;
  SocksCounters& counters_;
  Hooks hooks_;
  Stage stage_ = Stage::greeting;
  bool reading_ = false;
  std::vector<uint8_t> buffer_;
  std::array<char, 1024> read_space_{};
  std::unique_ptr<TcpConnection> carrier_;
  std::string destination_;
};

}  // namespace roam
