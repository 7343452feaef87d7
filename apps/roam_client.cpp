// roam-client: the tunnel client. Accepts local kernel TCP connections on port forwards
// and carries each over its own carrier connection in the userspace (lwIP) stack.
// Runs without privilege on a UDP link, or on a TUN device root created for the user.
#include <uv.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <unordered_map>
#include <vector>

#include "apps/channel_cli.hpp"
#include "apps/cli.hpp"
#include "apps/kernel_splice.hpp"
#include "stack/migrate/follower.hpp"
#include "apps/node_app.hpp"
#include "stack/flow_key.hpp"
#include "base/log.hpp"
#include "base/rate_limited_log.hpp"
#include "tun/device_address_watcher.hpp"
#include "base/clock.hpp"
#include "tun/host_address_watcher.hpp"
#include "tun/link_rebinder.hpp"
#include "tun/udp_link.hpp"

namespace {

using namespace roam;

const char* usage = R"(Usage: roam-client [OPTIONS] -L [BIND:]PORT:SERVER:SPORT [-L ...]

Forwards local kernel TCP connections over carrier connections to a roam-server.

Options:
  -L [BIND:]PORT:SERVER:SPORT
                         accept kernel TCP connections on BIND:PORT (BIND defaults to
                         127.0.0.1; IPv6 in brackets) and carry each to SERVER:SPORT,
                         the server's userspace address (repeatable)
  --no-follow            open no control channels: connections never follow a server
                         that moves (they break when it does)
  --addr-from-device     tun links: this node's address is the peer end of the TUN
                         device's point-to-point address (`ip addr add KERNEL peer NODE
                         dev NAME`; replaces --addr), and when the device is readdressed
                         the client moves its connections to the new address by itself:
                         each server is told with an authenticated ACM, and behind a
                         NAT the synthetic handshake opens the new path
  --addr-file FILE       this node's IPv4 address is the first word of FILE (replaces
                         --addr); on SIGUSR1 the file is read again and, if the address
                         changed, the client moves as above (any link: for a udp link
                         the address inside the tunnel)
  --udp-rebind-interval SECONDS
                         udp link: send each server that gave this client a link key
                         (roam-server --udp-roam) an authenticated link rebind this
                         often, besides right after the key arrives and whenever an
                         address on this host changes: a NAT that rebinds is healed
                         within one interval, and the rebinds keep its mapping alive.
                         0-3600, 0: only on address changes (default 10). A roaming
                         client binds its link to the wildcard (--link udp:0.0.0.0:PORT):
                         a socket bound to an address the host loses cannot send
  -h, --help             show this help

When a server moves as a whole (an Address Change Message takes every connection this
client had there), the forwards to it dial its new address from then on. A carrier that
fails (refused, no answer within --connect-timeout, reset, or a peer silent for
--dead-peer seconds) resets its local connection, and the client logs the reason.
)";

struct Forward {
  sockaddr_storage bind{};
  socklen_t bind_len = 0;
  IpAddress server;
  uint16_t server_port = 0;
  std::string text;
};

// Splits on ':' outside brackets.
std::vector<std::string> split_colons(const std::string& text) {
  std::vector<std::string> parts(1);
  int depth = 0;
  for (char c : text) {
    if (c == '[') ++depth;
    if (c == ']') --depth;
    if (c == ':' && depth == 0) {
      parts.emplace_back();
    } else {
      parts.back() += c;
    }
  }
  return parts;
}

Forward parse_forward(const std::string& text) {
  auto parts = split_colons(text);
  if (parts.size() == 3) parts.insert(parts.begin(), "127.0.0.1");
  if (parts.size() != 4) throw ConfigError("bad -L '" + text + "': expected [BIND:]PORT:SERVER:SPORT");
  Forward forward;
  forward.text = text;
  std::string bind = parts[0];
  if (bind.size() > 2 && bind.front() == '[') bind = bind.substr(1, bind.size() - 2);
  std::string bind_text = (bind.find(':') != std::string::npos ? "[" + bind + "]" : bind) + ":" + parts[1];
  parse_number(parts[1], 65535, "-L local port");
  if (!parse_socket_address(bind_text, forward.bind, forward.bind_len))
    throw ConfigError("bad -L '" + text + "': bad local address");
  forward.server = parse_host(parts[2], "-L server address");
  forward.server_port = static_cast<uint16_t>(parse_number(parts[3], 65535, "-L server port"));
  if (forward.server_port == 0) throw ConfigError("bad -L '" + text + "': server port 0");
  return forward;
}

struct ClientOptions {
  LinkOptions link;
  std::vector<Forward> forwards;
  ChannelOptions channel;
  bool follow = true;
  std::string address_device;  // --addr-from-device: the TUN device's name
  std::string address_file;    // --addr-file
  uint64_t rebind_interval_ms = 10'000;  // --udp-rebind-interval
};

// The TUN device a --link names ("tun:NAME[,no-offload]"), or "" for other links.
std::string tun_device_of(const std::string& link) {
  if (link.rfind("tun:", 0) != 0) return "";
  std::string name = link.substr(4);
  return name.substr(0, name.find(','));
}

// The first word of an --addr-file: an IPv4 address, optionally /LEN.
Result<std::string, std::string> read_address_file(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  if (!in || !(in >> word)) return unexpected("cannot read an address from " + path);
  auto prefix = IpPrefix::parse(word);
  if (!prefix || prefix->address.version != 4) return unexpected(path + ": '" + word + "' is not an IPv4 address");
  return word;
}

ClientOptions parse_arguments(int argc, char** argv) {
  ClientOptions options;
  // A client offers the segment MAC unless told not to: it is used only with servers whose
  // operator turned it on (roam-server --segment-mac), who know whether their path is trusted.
  options.channel.segment_mac = true;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf("%s\n%s\n%s", usage, channel_options_help(true).c_str(), link_options_help().c_str());
      std::exit(0);
    }
    if (parse_link_option(argc, argv, i, options.link)) continue;
    if (parse_channel_option(argc, argv, i, options.channel, true)) continue;
    if (arg == "-L") {
      options.forwards.push_back(parse_forward(option_value(argc, argv, i)));
    } else if (arg == "--no-follow") {
      options.follow = false;
    } else if (arg == "--addr-from-device") {
      options.address_device = "?";  // resolved below, once --link is known
    } else if (arg == "--addr-file") {
      options.address_file = option_value(argc, argv, i);
    } else if (arg == "--udp-rebind-interval") {
      options.rebind_interval_ms = parse_number(option_value(argc, argv, i), 3600, "--udp-rebind-interval") * 1000;
    } else {
      throw ConfigError("unknown argument '" + arg + "' (see --help)");
    }
  }
  if (options.forwards.empty()) throw ConfigError("nothing to do: give at least one -L forward (see --help)");
  if (!options.address_device.empty() && !options.address_file.empty())
    throw ConfigError("--addr-from-device and --addr-file both name this node's address: give one");
  if (!options.address_device.empty()) {
    options.address_device = tun_device_of(options.link.link);
    if (options.address_device.empty()) throw ConfigError("--addr-from-device needs --link tun:NAME");
    auto named = DeviceAddressWatcher::read_node_address(options.address_device, 4);
    if (!named) throw ConfigError("--addr-from-device: " + named.error());
    if (!*named)
      throw ConfigError("--addr-from-device: " + options.address_device +
                        " has no point-to-point IPv4 address (ip addr add KERNEL peer NODE dev " +
                        options.address_device + ")");
    options.link.address = (*named)->to_string();
    auto named6 = DeviceAddressWatcher::read_node_address(options.address_device, 6);
    if (named6 && *named6 && options.link.address6.empty()) options.link.address6 = (*named6)->to_string();
  }
  if (!options.address_file.empty()) {
    auto address = read_address_file(options.address_file);
    if (!address) throw ConfigError("--addr-file: " + address.error());
    options.link.address = *address;
  }
  return options;
}

class Client {
 public:
  Client(Node& node, std::vector<Forward> forwards, const ClientOptions& options) : node_(node) {
    for (auto& forward : forwards) {
      auto listener = std::make_unique<Listener>();
      listener->client = this;
      listener->forward = forward;
      uv_tcp_init(node_.loop(), listener->handle.get());
      listener->handle.mark_initialized();
      listener->handle.get()->data = listener.get();
      int rc = uv_tcp_bind(listener->handle.get(), reinterpret_cast<const sockaddr*>(&forward.bind), 0);
      if (rc == 0) rc = uv_listen(listener->handle.stream(), 1024, &Client::on_connection);
      if (rc != 0)
        throw ConfigError("cannot listen on " + format_socket_address(forward.bind) + ": " + uv_strerror(rc));
      logger("app")->info("forwarding {} -> {}:{}", format_socket_address(forward.bind), forward.server.to_string(),
                          forward.server_port);
      listeners_.push_back(std::move(listener));
    }
    // Last: a start-up error above must stay the only line printed.
    if (options.follow) {
      Follower::Events events;
      events.on_server_moved = [this](const Follower::ServerMove& move) { repoint_forwards(move); };
      ChannelOptions channel = options.channel;
      if (options.link.udp_link != nullptr) {
        start_rebinds(*options.link.udp_link, options.rebind_interval_ms);
        channel.link_rebind = true;
        events.on_link_key = [this](const IpAddress& server, const control::LinkKeyGrant& grant) {
          on_link_key(server, grant);
        };
      }
      follower_ = std::make_unique<Follower>(node_, channel, std::move(events));
      // Channels first, so that carriers can prove in their SYN whose they are.
      for (const auto& listener : listeners_) follower_->prepare(listener->forward.server);
    }
    watch_own_address(options);
  }

  void shutdown() {
    if (watcher_) watcher_->close();
    if (host_watcher_) host_watcher_->close();
    rebind_timer_.close();
    rebind_soon_timer_.close();
    if (rebinder_)
      logger("app")->info("link rebinds: keys {}, sent {}, failed {}, host address changes {}",
                          rebinder_->counters().keys, rebinder_->counters().sent, rebinder_->counters().send_failed,
                          host_watcher_ ? host_watcher_->changes() : 0);
    address_signal_.close();
    if (follower_) follower_->close();
    listeners_.clear();
    for (auto& [key, splice] : splices_) splice->close();
    logger("app")->info("carriers lost: {}", carrier_losses_text());
  }

 private:
  struct Listener {
    Client* client = nullptr;
    Forward forward;
    UvHandle<uv_tcp_t> handle;
  };

  static void on_connection(uv_stream_t* server, int status) noexcept {
    auto* listener = static_cast<Listener*>(server->data);
    if (listener == nullptr || status < 0) return;
    listener->client->accept(*listener);
  }

  // New connections go where the forward's server went (the connections it had there
  // followed the ACM already).
  void repoint_forwards(const Follower::ServerMove& move) {
    // The old server's link key is of no use any more (the new one sends its own).
    if (rebinder_) rebinder_->forget(move.from);
    for (auto& listener : listeners_) {
      Forward& forward = listener->forward;
      if (!(forward.server == move.from) || (move.from_port != 0 && forward.server_port != move.from_port)) continue;
      uint16_t port = move.from_port != 0 && move.to_port != 0 ? move.to_port : forward.server_port;
      logger("app")->info("forward {}: new connections go to {} (was {}: the server moved)",
                          format_socket_address(forward.bind), endpoint_string(move.to, port),
                          endpoint_string(forward.server, forward.server_port));
      forward.server = move.to;
      forward.server_port = port;
    }
  }

  // One line per lost carrier (at most one a second for each reason, with how many were
  // not logged), naming the server and the reason; counted by reason.
  void carrier_lost(const TcpConnection& carrier, const Forward& forward) {
    auto reason = static_cast<size_t>(carrier.loss());
    ++carrier_losses_[reason];
    uint64_t suppressed = 0;
    if (carrier_loss_logs_[reason].allow(suppressed))
      logger("app")->warn("carrier to {} (-L {}) lost: {}; its local connection was reset ({} more not logged)",
                          carrier.peer(), format_socket_address(forward.bind), carrier.loss_text(), suppressed);
  }

  std::string carrier_losses_text() const {
    std::string out;
    for (PeerLoss reason : {PeerLoss::reset_by_peer, PeerLoss::refused, PeerLoss::connect_timeout,
                            PeerLoss::keepalive_timeout, PeerLoss::retransmission_timeout}) {
      if (!out.empty()) out += ", ";
      out += std::string(peer_loss_name(reason)) + " " + std::to_string(carrier_losses_[static_cast<size_t>(reason)]);
    }
    return out;
  }

  void accept(Listener& listener) {
    UvHandle<uv_tcp_t> kernel;
    uv_tcp_init(node_.loop(), kernel.get());
    kernel.mark_initialized();
    if (uv_accept(listener.handle.stream(), kernel.stream()) != 0) return;
    auto splice = std::make_unique<KernelSplice>(
        node_, [this](KernelSplice* done) { node_.defer([this, done] { splices_.erase(done); }); });
    KernelSplice* raw = splice.get();
    splices_.emplace(raw, std::move(splice));
    raw->adopt_kernel(std::move(kernel));
    raw->set_on_carrier_lost(
        [this, forward = listener.forward](const TcpConnection& carrier) { carrier_lost(carrier, forward); });
    if (!follower_) {
      open_carrier(raw, listener.forward);
      return;
    }
    raw->set_on_carrier_connected([this](tcp_pcb* pcb) { follower_->track(pcb); });
    // The kernel side is not read before the carrier is up: it can wait for the channel.
    follower_->when_ready(listener.forward.server, [this, raw, forward = listener.forward] {
      if (splices_.count(raw) != 0) open_carrier(raw, forward);
    });
  }

  // Seed 003's redirect daemon: our own address changes (the TUN device was readdressed,
  // or SIGUSR1 with a new --addr-file) and the connections move with it.
  void watch_own_address(const ClientOptions& options) {
    if (!options.address_device.empty()) {
      watcher_ = std::make_unique<DeviceAddressWatcher>(
          node_.loop(), options.address_device,
          [this, device = options.address_device](const IpAddress& now) { change_address(now, "device " + device); });
      auto started = watcher_->start(node_.interface_address(0, 4), node_.interface_address(0, 6));
      if (!started) throw ConfigError("--addr-from-device: " + started.error());
    }
    if (!options.address_file.empty()) {
      address_file_ = options.address_file;
      uv_signal_init(node_.loop(), address_signal_.get());
      address_signal_.mark_initialized();
      address_signal_.get()->data = this;
      uv_signal_start(address_signal_.get(), &Client::on_address_signal, SIGUSR1);
      uv_unref(address_signal_.base());
    }
  }

  static void on_address_signal(uv_signal_t* handle, int /*signum*/) noexcept {
    auto* self = static_cast<Client*>(handle->data);
    if (self == nullptr) return;
    try {
      auto text = read_address_file(self->address_file_);
      if (!text) {
        logger("app")->warn("SIGUSR1: {}; the address stays", text.error());
        return;
      }
      auto prefix = IpPrefix::parse(*text);
      if (prefix) self->change_address(prefix->address, "SIGUSR1, " + self->address_file_);
    } catch (const std::exception& e) {
      logger("app")->error("SIGUSR1: {}", e.what());
    }
  }

  void change_address(const IpAddress& now, const std::string& source) {
    auto old = node_.interface_address(0, now.version);
    if (!old) {
      logger("app")->warn("{} names {}, but this node has no IPv{} address to change", source, now.to_string(),
                          now.version);
      return;
    }
    if (*old == now) return;
    logger("app")->info("{}: our address changes from {} to {}{}", source, old->to_string(), now.to_string(),
                        follower_ ? "" : " (--no-follow: connections on the old address are reset)");
    auto changed = follower_ ? follower_->change_own_address(*old, now) : node_.change_address(*old, now);
    if (!changed) logger("app")->warn("{}: the address stays {}: {}", source, old->to_string(), changed.error());
  }

  // Link rebinds (PROTOCOL.md 3.8): a UDP link's server learns our endpoint from them
  // when our host's address changes or a NAT in front of us rebinds.
  void start_rebinds(UdpLink& link, uint64_t interval_ms) {
    rebinder_ = std::make_unique<LinkRebinder>([&link](const IpAddress& server, std::span<const uint8_t> datagram) {
      auto endpoint = link.endpoint_for(server);
      return endpoint && link.send_datagram(datagram, *endpoint);
    });
    host_watcher_ = std::make_unique<HostAddressWatcher>(node_.loop(), [this] { on_host_addresses_changed(); });
    auto started = host_watcher_->start();
    if (!started) {
      // Periodic rebinds still heal a move, only later.
      logger("app")->warn("cannot watch this host's addresses ({}): link rebinds are only periodic", started.error());
      host_watcher_.reset();
    }
    for (auto* timer : {&rebind_timer_, &rebind_soon_timer_}) {
      uv_timer_init(node_.loop(), timer->get());
      timer->mark_initialized();
      timer->get()->data = this;
    }
    if (interval_ms > 0) {
      uv_timer_start(rebind_timer_.get(), &Client::on_rebind_timer, interval_ms, interval_ms);
      uv_unref(rebind_timer_.base());
    }
  }

  void on_link_key(const IpAddress& server, const control::LinkKeyGrant& grant) {
    if (!rebinder_) return;
    rebinder_->set_key(server, grant.inner, grant.key);
    logger("app")->info("server {} gave us a link key for {}: our UDP endpoint may move", server.to_string(),
                        grant.inner.to_string());
    // At once: the server learns the endpoint it sees us at (and, behind a NAT, the
    // route follows it from now on).
    rebinder_->send_to(server, unix_ms() * 1000);
  }

  // Sent now and once more a little later: the new address may not route yet when the
  // kernel reports it (a route is often added after its address).
  void on_host_addresses_changed() {
    if (!rebinder_ || rebinder_->size() == 0) return;
    size_t sent = rebinder_->send_all(unix_ms() * 1000);
    logger("app")->info("this host's addresses changed: sent {} link rebind(s)", sent);
    uv_timer_start(rebind_soon_timer_.get(), &Client::on_rebind_timer, rebind_again_ms, 0);
  }

  static void on_rebind_timer(uv_timer_t* timer) noexcept {
    auto* self = static_cast<Client*>(timer->data);
    if (self == nullptr || !self->rebinder_) return;
    self->rebinder_->send_all(unix_ms() * 1000);
  }
  static constexpr uint64_t rebind_again_ms = 500;

  void open_carrier(KernelSplice* raw, const Forward& forward) {
    auto carrier = TcpConnection::connect(forward.server, forward.server_port, raw, nullptr,
                                          follower_ ? follower_->syn_option_for(forward.server) : nullptr);
    if (!carrier) {
      // The local app gets a reset at once (close() with nothing exchanged resets the
      // kernel side). Rate-limited: a destination out of ports fails every accept.
      ++carrier_failures_;
      uint64_t suppressed = 0;
      if (carrier_failure_log_.allow(suppressed))
        logger("app")->warn("cannot open carrier to {}:{}: {} ({} failed in all; {} more not logged)",
                            forward.server.to_string(), forward.server_port, carrier.error(),
                            carrier_failures_, suppressed);
      raw->close();
      return;
    }
    raw->adopt_carrier(std::move(carrier.value()), false);
    node_.kick();
  }

  Node& node_;
  std::unique_ptr<Follower> follower_;
  std::unique_ptr<DeviceAddressWatcher> watcher_;
  std::unique_ptr<LinkRebinder> rebinder_;
  std::unique_ptr<HostAddressWatcher> host_watcher_;
  UvHandle<uv_timer_t> rebind_timer_;
  UvHandle<uv_timer_t> rebind_soon_timer_;
  UvHandle<uv_signal_t> address_signal_;
  std::string address_file_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<KernelSplice*, std::unique_ptr<KernelSplice>> splices_;
  RateLimitedLog carrier_failure_log_;
  uint64_t carrier_failures_ = 0;
  static constexpr size_t loss_kinds = static_cast<size_t>(PeerLoss::aborted) + 1;
  std::array<RateLimitedLog, loss_kinds> carrier_loss_logs_ = make_loss_logs();
  std::array<uint64_t, loss_kinds> carrier_losses_{};

  static std::array<RateLimitedLog, loss_kinds> make_loss_logs() {
    std::array<RateLimitedLog, loss_kinds> logs;
    logs.fill(RateLimitedLog(std::chrono::seconds(1)));
    return logs;
  }
};

}  // namespace

int main(int argc, char** argv) {
  return roam::run_node_app("roam-client", argc, argv, parse_arguments, [](roam::Node& node, ClientOptions& options) {
    return std::make_unique<Client>(node, std::move(options.forwards), options);
  });
}
