// roam-server: the server-side shim. Accepts carrier connections in its userspace stack
// and serves a built-in app (echo, discard) or relays each carrier to a kernel TCP backend.
#include <arpa/inet.h>
#include <uv.h>

#include <cstdio>
#include <memory>
#include <unordered_map>

#include "apps/cli.hpp"
#include "apps/node_app.hpp"
#include "apps/echo_app.hpp"
#include "apps/kernel_splice.hpp"
#include "stack/tcp_listener.hpp"
#include "tun/log.hpp"
#include "tun/udp_link.hpp"

namespace {

using namespace roam;

const char* usage = R"(Usage: roam-server [OPTIONS] MODE

Accepts carrier TCP connections on this node's userspace (lwIP) address and serves them.

Modes:
  echo                   send every byte back
  discard                read and drop every byte (a sink for benchmarks)
  relay --backend HOST:PORT
                         connect each carrier to a kernel TCP backend and copy bytes
                         both ways. (The backend's kernel socket is local to this host:
                         when later versions move sessions, a relay session's backend
                         leg cannot move with it.)

Options:
  --listen PORT          carrier port to accept on (default 7000)
  -h, --help             show this help
)";

struct ServerOptions {
  LinkOptions link;
  std::string mode;
  std::string backend;
  uint16_t port = 7000;
};

ServerOptions parse_arguments(int argc, char** argv) {
  ServerOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf("%s\n%s", usage, link_options_help().c_str());
      std::exit(0);
    }
    if (parse_link_option(argc, argv, i, options.link)) continue;
    if (arg == "--listen") {
      options.port = static_cast<uint16_t>(parse_number(option_value(argc, argv, i), 65535, "--listen port"));
    } else if (arg == "--backend") {
      options.backend = option_value(argc, argv, i);
    } else if (!arg.empty() && arg[0] != '-' && options.mode.empty()) {
      options.mode = arg;
    } else {
      throw ConfigError("unknown argument '" + arg + "' (see --help)");
    }
  }
  if (options.mode.empty()) throw ConfigError("no mode given: echo, discard or relay (see --help)");
  if (options.mode != "echo" && options.mode != "discard" && options.mode != "relay")
    throw ConfigError("unknown mode '" + options.mode + "': expected echo, discard or relay");
  if (options.mode == "relay" && options.backend.empty()) throw ConfigError("relay needs --backend HOST:PORT");
  if (options.mode != "relay" && !options.backend.empty()) throw ConfigError("--backend applies to relay only");
  if (options.port == 0) throw ConfigError("--listen port must be 1-65535");
  return options;
}

class Server {
 public:
  Server(Node& node, const ServerOptions& options) : node_(node), options_(options) {
    if (options_.mode == "relay" &&
        !parse_socket_address(options_.backend, backend_, backend_len_))
      throw ConfigError("bad --backend '" + options_.backend + "': expected IP:PORT");
    auto listener = TcpListener::listen(options_.port, [this](tcp_pcb* pcb) { return accept(pcb); });
    if (!listener) throw ConfigError(listener.error());
    listener_ = std::move(listener.value());
    logger("app")->info("serving {} on port {}{}", options_.mode, options_.port,
                        options_.mode == "relay" ? " -> " + options_.backend : "");
  }

  // Stops accepting and closes every session.
  void shutdown() {
    if (listener_) listener_->close();
    for (auto& [key, session] : echo_sessions_) session->close();
    for (auto& [key, splice] : splices_) splice->close();
  }

  size_t accepted() const { return accepted_; }

 private:
  bool accept(tcp_pcb* pcb) {
    ++accepted_;
    tcp_nagle_disable(pcb);
    if (options_.mode == "relay") {
      auto splice = std::make_unique<KernelSplice>(node_, [this](KernelSplice* done) {
        node_.defer([this, done] { splices_.erase(done); });
      });
      KernelSplice* raw = splice.get();
      splices_.emplace(raw, std::move(splice));
      raw->adopt_carrier(std::make_unique<TcpConnection>(pcb, raw), true);
      raw->connect_kernel(reinterpret_cast<const sockaddr*>(&backend_));
      return true;
    }
    auto mode = options_.mode == "echo" ? EchoSession::Mode::echo : EchoSession::Mode::discard;
    auto session = std::make_unique<EchoSession>(node_, mode, pcb, [this](EchoSession* done) {
      node_.defer([this, done] { echo_sessions_.erase(done); });
    });
    echo_sessions_.emplace(session.get(), std::move(session));
    return true;
  }

  Node& node_;
  ServerOptions options_;
  sockaddr_storage backend_{};
  socklen_t backend_len_ = 0;
  std::unique_ptr<TcpListener> listener_;
  std::unordered_map<EchoSession*, std::unique_ptr<EchoSession>> echo_sessions_;
  std::unordered_map<KernelSplice*, std::unique_ptr<KernelSplice>> splices_;
  size_t accepted_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  return roam::run_node_app("roam-server", argc, argv, parse_arguments, [](roam::Node& node, ServerOptions& options) {
    return std::make_unique<Server>(node, options);
  });
}
