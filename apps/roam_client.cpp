// roam-client: the tunnel client. Accepts local kernel TCP connections on port forwards
// and carries each over its own carrier connection in the userspace (lwIP) stack.
// Runs without privilege on a UDP link, or on a TUN device root created for the user.
#include <uv.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <sys/stat.h>

#include <cctype>
#include <fstream>
#include <sstream>
#include <memory>
#include <unordered_map>
#include <vector>

#include "apps/channel_cli.hpp"
#include "apps/checkpoint_holder.hpp"
#include "apps/checkpoint_resumer.hpp"
#include "apps/cli.hpp"
#include "apps/client_metrics.hpp"
#include "apps/kernel_splice.hpp"
#include "apps/socks_session.hpp"
#include "apps/overlay_destination.hpp"
#include "apps/proxy_session.hpp"
#include "stack/lwip_address.hpp"
#include "stack/transparent_guard.hpp"
#include "stack/transparent_listener.hpp"
#include "tun/device_routes.hpp"
#include "tun/tun_link.hpp"
#include "apps/metrics_server.hpp"
#include "apps/metrics_text.hpp"
#include "apps/roam_follow.hpp"
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

const char* usage = R"(Usage: roam-client [OPTIONS] -L [BIND:]PORT:SERVER:SPORT [-L ...] [-D [BIND:]PORT ...]
                   [--transparent DEV --transparent-route PREFIX ...]

Forwards local kernel TCP connections (from -L ports, or SOCKS5 clients on -D ports)
over carrier connections to roam-servers.

Options:
  -L [BIND:]PORT:SERVER:SPORT
                         accept kernel TCP connections on BIND:PORT (BIND defaults to
                         127.0.0.1; IPv6 in brackets) and carry each to SERVER:SPORT,
                         the server's userspace address (repeatable). When SERVER
                         is a member of a roaming pool whose schedule this client
                         learned (roam-server --roam-pool), each new connection goes
                         to the member active at that moment instead
  -D [BIND:]PORT         a SOCKS5 proxy (RFC 1928, CONNECT) on BIND:PORT (BIND defaults to
                         127.0.0.1): each connection is carried to the destination it
                         names, which must be a server's userspace address inside an
                         overlay route (--route; any address on a tun link), else it is
                         answered "network unreachable"; names are resolved here, from
                         --socks-hosts only (unknown: "host unreachable") (repeatable)
  --socks-auth FILE      -D requires RFC 1929 username/password: FILE holds one
                         "USER PASSWORD" per line (the password is the rest of the
                         line; '#' comments); 0600 or stricter, looser is refused
  --socks-hosts FILE     names for -D destinations, in /etc/hosts form ("IP NAME...")
  --transparent DEV      transparent mode (needs CAP_NET_ADMIN): create TUN device DEV,
                         route every --transparent-route prefix into it, and carry each
                         TCP connection a local application opens to such an address
                         like a -D CONNECT to that address and port (no per-application
                         setup); destinations outside the overlay (as for -D) are reset.
                         IPv4, udp links only. The device and its routes go when the
                         client exits
  --transparent-route PREFIX
                         an IPv4 prefix routed into the --transparent device (repeatable;
                         at least one)
  --transparent-addr ADDR
                         the kernel's own IPv4 address on the --transparent device, the
                         source of the connections it carries (default 169.254.77.1;
                         must lie outside every routed prefix)
  --metrics [IP:]PORT    serve Prometheus metrics at http://IP:PORT/metrics (a bare
                         PORT binds 127.0.0.1; plain HTTP, keep it local): the
                         follower's, handover and node counters as
                         roamstack_<group>_<name>. Default: off
  --no-follow            open no control channels: connections never follow a server
                         that moves (they break when it does)
  --resume-to IP         when a server that pushed checkpoints of a connection (roam-server
                         --checkpoint-seed) falls silent on it, present the latest one to
                         the server at IP, which rebuilds the connection, and go on there
                         (docs/PROTOCOL.md 14). Default: a roam pool member's connection
                         goes to the member the learned schedule names (the active one,
                         or the next other one when the silent member is active); other
                         servers' checkpoints are only kept
  --resume-after-ms MS   how long a server must be silent on a connection before it is
                         resumed elsewhere (100-600000, default 3000)
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

struct SocksPort {
  sockaddr_storage bind{};
  socklen_t bind_len = 0;
};

SocksPort parse_socks_port(const std::string& text) {
  auto parts = split_colons(text);
  if (parts.size() == 1) parts.insert(parts.begin(), "127.0.0.1");
  if (parts.size() != 2) throw ConfigError("bad -D '" + text + "': expected [BIND:]PORT");
  std::string bind = parts[0];
  if (bind.size() > 2 && bind.front() == '[') bind = bind.substr(1, bind.size() - 2);
  parse_number(parts[1], 65535, "-D port");
  SocksPort port;
  std::string bind_text = (bind.find(':') != std::string::npos ? "[" + bind + "]" : bind) + ":" + parts[1];
  if (!parse_socket_address(bind_text, port.bind, port.bind_len))
    throw ConfigError("bad -D '" + text + "': bad local address");
  return port;
}

std::string lowercase(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// --socks-auth FILE: "USER PASSWORD" lines. Like key files, readable by its owner only.
SocksUsers read_socks_users(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) throw ConfigError("--socks-auth: cannot read " + path);
  if ((info.st_mode & 077) != 0)
    throw ConfigError("--socks-auth: " + path + " is readable by others (chmod 600 " + path + ")");
  std::ifstream in(path);
  if (!in) throw ConfigError("--socks-auth: cannot read " + path);
  SocksUsers users;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    auto space = line.find(' ');
    if (space == 0 || space == std::string::npos || space > 255 || line.size() - space - 1 > 255)
      throw ConfigError("--socks-auth: " + path + ":" + std::to_string(number) +
                        ": expected USER PASSWORD (each 1..255 bytes)");
    users.passwords[line.substr(0, space)] = line.substr(space + 1);
  }
  if (!users.enabled()) throw ConfigError("--socks-auth: " + path + " names no user");
  return users;
}

// --socks-hosts FILE: /etc/hosts lines, "IP NAME [ALIAS...]"; names match case-insensitively.
std::unordered_map<std::string, IpAddress> read_socks_hosts(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError("--socks-hosts: cannot read " + path);
  std::unordered_map<std::string, IpAddress> hosts;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    line = line.substr(0, line.find('#'));
    std::istringstream words(line);
    std::string address_text;
    if (!(words >> address_text)) continue;
    auto address = IpAddress::parse(address_text);
    if (!address)
      throw ConfigError("--socks-hosts: " + path + ":" + std::to_string(number) + ": '" + address_text +
                        "' is not an IP address");
    for (std::string name; words >> name;) hosts.emplace(lowercase(name), *address);
  }
  return hosts;
}

struct ClientOptions {
  LinkOptions link;
  std::vector<Forward> forwards;
  std::vector<SocksPort> socks;
  SocksUsers socks_users;
  std::unordered_map<std::string, IpAddress> socks_hosts;
  ChannelOptions channel;
  bool follow = true;
  std::string address_device;  // --addr-from-device: the TUN device's name
  std::string address_file;    // --addr-file
  std::string metrics;         // --metrics
  std::optional<IpAddress> resume_to;     // --resume-to
  uint64_t resume_after_ms = 3000;        // --resume-after-ms
  uint64_t rebind_interval_ms = 10'000;  // --udp-rebind-interval
  std::string transparent_device;               // --transparent
  std::vector<IpPrefix> transparent_routes;     // --transparent-route
  IpAddress transparent_address = IpAddress::parse("169.254.77.1").value();  // --transparent-addr
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

// Every option above as a config file key (apps/config_file.hpp); -L is `forward`.
OptionSpecs client_option_specs() {
  using Kind = OptionSpec::Kind;
  OptionSpecs specs = {
      {"forward", "-L", Kind::value, true},
      {"socks", "-D", Kind::value, true},
      {"socks-auth", "--socks-auth", Kind::value, false},
      {"socks-hosts", "--socks-hosts", Kind::value, false},
      {"udp-rebind-interval", "--udp-rebind-interval", Kind::value, false},
      {"no-follow", "--no-follow", Kind::flag, false},
      {"resume-to", "--resume-to", Kind::value, false},
      {"resume-after-ms", "--resume-after-ms", Kind::value, false},
      {"addr-from-device", "--addr-from-device", Kind::flag, false},
      {"addr-file", "--addr-file", Kind::value, false},
      {"metrics", "--metrics", Kind::value, false},
      {"transparent", "--transparent", Kind::value, false},
      {"transparent-route", "--transparent-route", Kind::value, true},
      {"transparent-addr", "--transparent-addr", Kind::value, false},
  };
  add_specs(specs, channel_option_specs(true));
  add_specs(specs, link_option_specs());
  return specs;
}

ClientOptions parse_arguments(ArgumentList& arguments) {
  int argc = arguments.argc();
  char** argv = arguments.argv();
  ClientOptions options;
  // A client offers the segment MAC unless told not to: it is used only with servers whose
  // operator turned it on (roam-server --segment-mac), who know whether their path is trusted.
  options.channel.segment_mac = true;
  for (int i = 1; arguments.at(i); ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf("%s\n%s\n%s\n%s", usage, channel_options_help(true).c_str(), link_options_help().c_str(),
                  config_option_help().c_str());
      std::exit(0);
    }
    if (parse_link_option(argc, argv, i, options.link)) continue;
    if (parse_channel_option(argc, argv, i, options.channel, true)) continue;
    if (arg == "-L") {
      options.forwards.push_back(parse_forward(option_value(argc, argv, i)));
    } else if (arg == "-D") {
      options.socks.push_back(parse_socks_port(option_value(argc, argv, i)));
    } else if (arg == "--socks-auth") {
      options.socks_users = read_socks_users(option_value(argc, argv, i));
    } else if (arg == "--socks-hosts") {
      options.socks_hosts = read_socks_hosts(option_value(argc, argv, i));
    } else if (arg == "--no-follow") {
      options.follow = false;
    } else if (arg == "--resume-to") {
      std::string text = option_value(argc, argv, i);
      options.resume_to = IpAddress::parse(text);
      if (!options.resume_to) throw ConfigError("bad --resume-to '" + text + "': expected an IP address");
    } else if (arg == "--resume-after-ms") {
      options.resume_after_ms = parse_number(option_value(argc, argv, i), 600'000, "--resume-after-ms");
      if (options.resume_after_ms < 100) throw ConfigError("--resume-after-ms must be 100-600000");
    } else if (arg == "--addr-from-device") {
      options.address_device = "?";  // resolved below, once --link is known
    } else if (arg == "--addr-file") {
      options.address_file = option_value(argc, argv, i);
    } else if (arg == "--metrics") {
      options.metrics = option_value(argc, argv, i);
    } else if (arg == "--transparent") {
      options.transparent_device = option_value(argc, argv, i);
    } else if (arg == "--transparent-route") {
      std::string text = option_value(argc, argv, i);
      auto prefix = IpPrefix::parse(text);
      if (!prefix || prefix->address.version != 4)
        throw ConfigError("--transparent-route: '" + text + "' is not an IPv4 prefix");
      options.transparent_routes.push_back(*prefix);
    } else if (arg == "--transparent-addr") {
      std::string text = option_value(argc, argv, i);
      auto address = IpAddress::parse(text);
      if (!address || address->version != 4) throw ConfigError("--transparent-addr: '" + text + "' is not an IPv4 address");
      options.transparent_address = *address;
    } else if (arg == "--udp-rebind-interval") {
      options.rebind_interval_ms = parse_number(option_value(argc, argv, i), 3600, "--udp-rebind-interval") * 1000;
    } else {
      throw ConfigError("unknown argument '" + arg + "' (see --help)");
    }
  }
  if (options.forwards.empty() && options.socks.empty() && options.transparent_device.empty() &&
      options.transparent_routes.empty())
    throw ConfigError("nothing to do: give at least one -L forward, -D port or --transparent device (see --help)");
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
  if (!options.transparent_device.empty() || !options.transparent_routes.empty()) {
    if (options.transparent_device.empty()) throw ConfigError("--transparent-route needs --transparent DEV");
    if (options.transparent_routes.empty()) throw ConfigError("--transparent needs at least one --transparent-route");
    // On a tun link the carriers themselves leave through the kernel's routing table, which
    // would send them to the overlay addresses' route: back into the transparent device.
    if (!tun_device_of(options.link.link).empty())
      throw ConfigError("--transparent needs a udp link (on a tun link the kernel would route the carriers "
                        "into the transparent device too)");
    // The link's own datagrams must not be routed into the device either.
    for (const auto& route : options.link.routes) {
      auto equals = route.find('=');
      if (equals == std::string::npos) continue;
      auto parts = split_colons(route.substr(equals + 1));
      std::string host = parts.empty() ? "" : parts[0];
      if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
      auto endpoint = IpAddress::parse(host);
      for (const auto& prefix : options.transparent_routes)
        if (endpoint && prefix.contains(*endpoint))
          throw ConfigError("--transparent-route " + prefix.address.to_string() + "/" + std::to_string(prefix.length) +
                            " would take the link's own datagrams to " + endpoint->to_string());
    }
    for (const auto& prefix : options.transparent_routes)
      if (prefix.contains(options.transparent_address))
        throw ConfigError("--transparent-addr " + options.transparent_address.to_string() +
                          " lies inside --transparent-route " + prefix.address.to_string() + "/" +
                          std::to_string(prefix.length));
  }
  if (!options.address_file.empty()) {
    auto address = read_address_file(options.address_file);
    if (!address) throw ConfigError("--addr-file: " + address.error());
    options.link.address = *address;
  }
  if (options.resume_to && !options.follow) throw ConfigError("--resume-to needs the control channels (not with --no-follow)");
  return options;
}

class Client {
 public:
  Client(Node& node, std::vector<Forward> forwards, const ClientOptions& options)
      : node_(node), socks_users_(options.socks_users), socks_hosts_(options.socks_hosts) {
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
    overlay_.tun_link = !tun_device_of(options.link.link).empty();
    overlay_.has_ipv4 = node_.interface_address(0, 4).has_value();
    overlay_.has_ipv6 = node_.interface_address(0, 6).has_value();
    for (const auto& route : options.link.routes) {
      auto prefix = IpPrefix::parse(route.substr(0, route.find('=')));
      if (prefix) overlay_.routes.push_back(*prefix);
    }
    open_socks_ports(options);
    if (!options.transparent_device.empty()) start_transparent(options);
    if (!options.metrics.empty())
      metrics_ = std::make_unique<MetricsServer>(node_.loop(), options.metrics, [this] {
        return metrics_text({&counters_, &metrics_->registry()});
      });
    // Last: a start-up error above must stay the only line printed.
    if (options.follow) {
      Follower::Events events;
      events.on_server_moved = [this](const Follower::ServerMove& move) { repoint_forwards(move); };
      roam_follow_ = std::make_unique<RoamFollow>(counters_, node_.loop());
      events.on_roam_update = [this](const IpAddress& server, const control::RoamUpdate& update) {
        roam_follow_->on_update(server, update);
      };
      events.on_error = [this](const IpAddress& server, const control::ErrorMessage& error) {
        if (error.code == control::error_no_roam_update) roam_follow_->on_unavailable(server, error.text);
      };
      // Only the server a connection points at now is heard (a copy left behind may still push).
      checkpoints_ = std::make_unique<CheckpointHolder>(counters_, client_pcb_server);
      events.on_checkpoint = [this](const IpAddress& server, const control::CheckpointPush& push) {
        checkpoints_->on_checkpoint(server, push);
      };
      ChannelOptions channel = options.channel;
      if (options.link.udp_link != nullptr) {
        start_rebinds(*options.link.udp_link, options.rebind_interval_ms);
        channel.link_rebind = true;
        events.on_link_key = [this](const IpAddress& server, const control::LinkKeyGrant& grant) {
          on_link_key(server, grant);
        };
      }
      events.on_resume_answer = [this](const IpAddress& server, const control::ResumeAnswer& answer) {
        if (resumer_) resumer_->on_answer(server, answer);
      };
      follower_ = std::make_unique<Follower>(node_, channel, std::move(events));
      // --resume-to names the next server; without it a pool member's connections go to the
      // member the schedule names (PROTOCOL.md 14.5); neither: checkpoints are only kept.
      resumer_ = std::make_unique<CheckpointResumer>(node_, *follower_, *checkpoints_, options.resume_to,
                                                     roam_follow_.get(), options.resume_after_ms, counters_);
      checkpoints_->set_on_stale_copy(
          [this](const IpAddress& server, uint64_t id) {
            if (resumer_) resumer_->on_stale_copy(server, id);
          });
      // The channel to the next server is up before it is needed: a takeover costs the
      // silence bound, not a handshake more.
      if (options.resume_to) follower_->prepare(*options.resume_to);
      // Channels first, so that carriers can prove in their SYN whose they are.
      for (const auto& listener : listeners_) follower_->prepare(listener->forward.server);
    }
    if (metrics_) register_metrics();
    watch_own_address(options);
  }

  void shutdown() {
    if (metrics_) metrics_->close();
    if (watcher_) watcher_->close();
    if (host_watcher_) host_watcher_->close();
    rebind_timer_.close();
    rebind_soon_timer_.close();
    if (rebinder_)
      logger("app")->info("link rebinds: keys {}, sent {}, failed {}, host address changes {}",
                          rebinder_->counters().keys, rebinder_->counters().sent, rebinder_->counters().send_failed,
                          host_watcher_ ? host_watcher_->changes() : 0);
    address_signal_.close();
    if (resumer_) resumer_->close();
    if (follower_) follower_->close();
    if (roam_follow_) roam_follow_->close();
    listeners_.clear();
    socks_listeners_.clear();
    for (auto& [key, session] : socks_sessions_) session->close();
    for (auto& [key, splice] : splices_) splice->close();
    stop_transparent();
    logger("app")->info("carriers lost: {}", carrier_losses_text());
    if (!socks_listeners_text_.empty()) logger("app")->info("socks5: {}", socks_counters_.text());
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
  // followed the ACM already). SOCKS destinations follow the same moves (socks_moves_).
  void repoint_forwards(const Follower::ServerMove& move) {
    if (!socks_listeners_.empty() || transparent_listener_) {
      socks_moves_.push_back(move);
      if (socks_moves_.size() > max_socks_moves) socks_moves_.erase(socks_moves_.begin());
    }
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
  void carrier_lost(const TcpConnection& carrier, const std::string& local) {
    auto reason = static_cast<size_t>(carrier.loss());
    ++carrier_losses_[reason];
    uint64_t suppressed = 0;
    if (carrier_loss_logs_[reason].allow(suppressed))
      logger("app")->warn("carrier to {} ({}) lost: {}; its local connection was reset ({} more not logged)",
                          carrier.peer(), local, carrier.loss_text(), suppressed);
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
    raw->set_on_carrier_lost([this, local = "-L " + format_socket_address(listener.forward.bind)](
                                 const TcpConnection& carrier) { carrier_lost(carrier, local); });
    if (!follower_) {
      open_carrier(raw, listener.forward);
      return;
    }
    raw->set_on_carrier_connected([this](tcp_pcb* pcb) { follower_->track(pcb); });
    // The kernel side is not read before the carrier is up: it can wait for the channel.
    // Where the forward points when the carrier opens: a transfer notification (or a
    // move) that came while it waited sends it to the new server (the listener outlives
    // the follower's waiters: shutdown closes the follower first).
    dial_when_ready(raw, &listener, 0);
  }

  // ---- Roaming pool (PROTOCOL.md 13.6): a carrier to a pool member goes to the member
  // active now. It waits for that member's channel; when the pool roamed meanwhile it
  // waits for the next member's (at most max_roam_rewaits times), then dials where the
  // schedule says at that moment.
  Forward roaming_target(const Forward& forward, bool count) {
    Forward out = forward;
    if (!roam_follow_) return out;
    if (auto active = roam_follow_->dial_target(forward.server, forward.server_port, count)) {
      out.server = active->address;
      out.server_port = active->port;
    }
    return out;
  }
  void dial_when_ready(KernelSplice* raw, Listener* where, int rewaits) {
    IpAddress server = roaming_target(where->forward, rewaits == 0).server;
    follower_->when_ready(server, [this, raw, where, server, rewaits] {
      if (splices_.count(raw) == 0) return;
      // The channel is up: its first ROAM_UPDATE follows at once when SERVER is a member.
      bool announced = (follower_->peer_capabilities(server) & control::capability_roam_pool) != 0;
      roam_follow_->when_scheduled(server, announced, [this, raw, where, server, rewaits] {
        if (splices_.count(raw) == 0) return;
        Forward target = roaming_target(where->forward, false);
        if (!(target.server == server) && rewaits < max_roam_rewaits) {
          dial_when_ready(raw, where, rewaits + 1);
          return;
        }
        open_carrier(raw, target);
      });
    });
  }
  static constexpr int max_roam_rewaits = 3;
  // ---- end of the roaming pool's part

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

  struct SocksListener {
    Client* client = nullptr;
    std::string text;
    UvHandle<uv_tcp_t> handle;
  };

  void open_socks_ports(const ClientOptions& options) {
    for (const auto& port : options.socks) {
      auto listener = std::make_unique<SocksListener>();
      listener->client = this;
      listener->text = format_socket_address(port.bind);
      uv_tcp_init(node_.loop(), listener->handle.get());
      listener->handle.mark_initialized();
      listener->handle.get()->data = listener.get();
      int rc = uv_tcp_bind(listener->handle.get(), reinterpret_cast<const sockaddr*>(&port.bind), 0);
      if (rc == 0) rc = uv_listen(listener->handle.stream(), 1024, &Client::on_socks_connection);
      if (rc != 0) throw ConfigError("cannot listen on " + listener->text + ": " + uv_strerror(rc));
      logger("app")->info("socks5 on {}{}", listener->text, socks_users_.enabled() ? " (username/password)" : "");
      socks_listeners_text_ += (socks_listeners_text_.empty() ? "" : ", ") + listener->text;
      socks_listeners_.push_back(std::move(listener));
    }
  }

  static void on_socks_connection(uv_stream_t* server, int status) noexcept {
    auto* listener = static_cast<SocksListener*>(server->data);
    if (listener == nullptr || status < 0) return;
    try {
      listener->client->accept_socks(*listener);
    } catch (const std::exception& e) {
      logger("app")->error("socks5 accept: {}", e.what());
    }
  }

  void accept_socks(SocksListener& listener) {
    UvHandle<uv_tcp_t> kernel;
    uv_tcp_init(node_.loop(), kernel.get());
    kernel.mark_initialized();
    if (uv_accept(listener.handle.stream(), kernel.stream()) != 0) return;
    SocksSession::Hooks hooks;
    hooks.on_request = [this](SocksSession& session, const wire::socks5::Request& request) {
      socks_request(session, request);
    };
    hooks.on_established = [this, local = "-D " + listener.text](UvHandle<uv_tcp_t> socket, std::vector<uint8_t> early,
                                                                   std::unique_ptr<TcpConnection> carrier) {
      socks_established(std::move(socket), std::move(early), std::move(carrier), local);
    };
    hooks.on_finished = [this](SocksSession* done) { node_.defer([this, done] { socks_sessions_.erase(done); }); };
    auto session = std::make_unique<SocksSession>(node_, std::move(kernel), socks_users_, socks_counters_,
                                                  std::move(hooks));
    SocksSession* raw = session.get();
    socks_sessions_.emplace(raw, std::move(session));
  }

  // Where a SOCKS destination goes (docs/PROTOCOL.md, "SOCKS5 on roam-client"): an address
  // is dialed as it is, a name is looked up in --socks-hosts (a literal address is taken as
  // one); then the server moves this client followed apply, and the result must lie inside
  // an overlay route (on a tun link: be of a family this node has an address of).
  void socks_request(SocksSession& session, const wire::socks5::Request& request) {
    using wire::socks5::Reply;
    IpAddress address = request.address;
    uint16_t port = request.port;
    if (request.address_type == wire::socks5::AddressType::domain) {
      auto literal = IpAddress::parse(request.name);
      auto known = socks_hosts_.find(lowercase(request.name));
      if (literal) {
        address = *literal;
      } else if (known != socks_hosts_.end()) {
        address = known->second;
      } else {
        ++socks_counters_.unresolved;
        socks_refusal(session, "unknown name");
        session.refuse(Reply::host_unreachable);
        return;
      }
    }
    apply_server_moves(address, port);
    if (!carriable(address) || port == 0) {
      ++socks_counters_.not_carried;
      socks_refusal(session, "not inside an overlay route");
      session.refuse(Reply::network_unreachable);
      return;
    }
    if (!follower_) {
      open_socks_carrier(session, address, port);
      return;
    }
    follower_->prepare(address);
    follower_->when_ready(address, [this, raw = &session, address, port] {
      if (socks_sessions_.count(raw) != 0) open_socks_carrier(*raw, address, port);
    });
  }

  bool carriable(const IpAddress& address) const { return overlay_carries(overlay_, address); }

  // Where a new connection to address:port goes now: the server moves this client
  // followed apply (for -D and --transparent alike).
  void apply_server_moves(IpAddress& address, uint16_t& port) const {
    for (const auto& move : socks_moves_) {
      if (!(address == move.from) || (move.from_port != 0 && port != move.from_port)) continue;
      if (move.from_port != 0 && move.to_port != 0) port = move.to_port;
      address = move.to;
    }
  }

  // Transparent mode (README "Transparent mode"): lwIP terminates, on the TUN device the
  // kernel routes the chosen prefixes into, every TCP connection a local application opens
  // to them, and each becomes a ProxySession: that local leg spliced to a carrier to the
  // destination the application dialled (owner proof, follows the server, moves with us).
  void start_transparent(const ClientOptions& options) {
    const std::string& device = options.transparent_device;
    const IpAddress kernel = options.transparent_address;
    // The kernel's address must never be a destination the client carries: its packets
    // could then reach a carrier's pcb.
    if (carriable(kernel))
      throw ConfigError("--transparent-addr " + kernel.to_string() + " lies inside an overlay route");
    auto link = std::make_unique<TunLink>(node_.loop(), TunLinkConfig{device, options.link.mtu, true});
    InterfaceConfig config;
    config.address4 = kernel;  // lwIP routes its answers to the kernel's address into the device
    config.prefix4 = 32;
    auto added = node_.add_interface(std::move(link), config);
    if (!added) throw ConfigError("--transparent " + device + ": " + added.error());
    netif* interface = node_.lwip_interface(node_.interface_count() - 1);
    auto routed = route_prefixes_into_device(device, kernel, options.transparent_routes);
    if (!routed) throw ConfigError("--transparent: " + routed.error());
    auto accepts = [this](const IpAddress& destination, uint16_t port) {
      IpAddress address = destination;
      apply_server_moves(address, port);
      return port != 0 && carriable(address);
    };
    transparent_guard_ = std::make_unique<TransparentGuard>(interface, kernel, accepts);
    node_.add_input_filter(InputStage::defense, transparent_guard_.get());
    auto listener = TransparentListener::listen(interface, accepts, [this](tcp_pcb* pcb) {
      return accept_transparent(pcb);
    });
    if (!listener) throw ConfigError("--transparent: " + listener.error());
    transparent_listener_ = std::move(listener.value());
    std::string prefixes;
    for (const auto& prefix : options.transparent_routes)
      prefixes += (prefixes.empty() ? "" : ", ") + prefix.address.to_string() + "/" + std::to_string(prefix.length);
    logger("app")->info("transparent: {} routes {} (kernel address {})", device, prefixes, kernel.to_string());
  }

  bool accept_transparent(tcp_pcb* pcb) {
    IpAddress address = from_lwip(pcb->local_ip);
    uint16_t port = pcb->local_port;
    apply_server_moves(address, port);
    tcp_nagle_disable(pcb);
    ProxySession::Hooks hooks;
    hooks.on_origin_connected = [this](tcp_pcb* carrier) {
      ++transparent_connected_;
      if (follower_) follower_->track(carrier);
    };
    hooks.on_origin_failed = [this, address, port](const std::string& why) {
      ++transparent_failures_;
      uint64_t suppressed = 0;
      if (carrier_failure_log_.allow(suppressed))
        logger("app")->warn("transparent {}: {}; the local connection is reset ({} more not logged)",
                            endpoint_string(address, port), why, suppressed);
    };
    auto session = std::make_unique<ProxySession>(
        node_, pcb, [this](MovableSession* done) { node_.defer([this, done] { transparent_sessions_.erase(done); }); },
        std::move(hooks));
    ProxySession* raw = session.get();
    transparent_sessions_.emplace(raw, std::move(session));
    // Not from inside lwIP's accept callback: the carrier opens on the next loop turn, once
    // the channel to its server can give it an owner proof (or gave up waiting).
    node_.defer([this, raw, lifetime = raw->lifetime(), address, port] {
      if (lifetime.expired()) return;
      auto open = [this, raw, lifetime, address, port] {
        if (lifetime.expired()) return;
        auto carrier = TcpConnection::connect(address, port, raw, nullptr,
                                              follower_ ? follower_->syn_option_for(address) : nullptr);
        if (!carrier) {
          raw->fail_origin("cannot open a carrier: " + carrier.error());
          return;
        }
        raw->attach_origin(std::move(carrier.value()));
        node_.kick();
      };
      if (!follower_) {
        open();
        return;
      }
      follower_->prepare(address);
      follower_->when_ready(address, open);
    });
    node_.kick();
    return true;
  }

  void stop_transparent() {
    if (transparent_listener_) transparent_listener_->close();
    for (auto& [key, session] : transparent_sessions_) session->close();
    if (!transparent_guard_) return;
    node_.remove_input_filter(transparent_guard_.get());
    const auto& g = transparent_guard_->counters();
    logger("app")->info(
        "transparent: accepted {}, carried {}, carrier failures {}, refused (outside the overlay) {}, "
        "dropped: not tcp {}, foreign source {}",
        transparent_listener_ ? transparent_listener_->counters().accepted : 0, transparent_connected_,
        transparent_failures_, g.refused + (transparent_listener_ ? transparent_listener_->counters().refused_late : 0),
        g.not_tcp, g.foreign_source);
  }

  void socks_refusal(const SocksSession& session, const char* why) {
    uint64_t suppressed = 0;
    if (socks_refusal_log_.allow(suppressed))
      logger("app")->info("socks5 {}: refused: {} ({} more not logged)", session.destination(), why, suppressed);
  }

  void open_socks_carrier(SocksSession& session, const IpAddress& address, uint16_t port) {
    auto carrier = TcpConnection::connect(address, port, &session, nullptr,
                                          follower_ ? follower_->syn_option_for(address) : nullptr);
    if (!carrier) {
      ++socks_counters_.failed;
      socks_refusal(session, carrier.error().c_str());
      session.refuse(wire::socks5::Reply::general_failure);
      return;
    }
    session.adopt_carrier(std::move(carrier.value()));
  }

  void socks_established(UvHandle<uv_tcp_t> kernel, std::vector<uint8_t> early, std::unique_ptr<TcpConnection> carrier,
                         const std::string& local) {
    auto splice = std::make_unique<KernelSplice>(
        node_, [this](KernelSplice* done) { node_.defer([this, done] { splices_.erase(done); }); });
    KernelSplice* raw = splice.get();
    splices_.emplace(raw, std::move(splice));
    raw->set_on_carrier_lost([this, local](const TcpConnection& lost) { carrier_lost(lost, local); });
    tcp_pcb* pcb = carrier->pcb();
    raw->adopt_kernel(std::move(kernel), std::move(early));
    raw->adopt_carrier(std::move(carrier), true);
    if (follower_ && pcb != nullptr) follower_->track(pcb);
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
  std::unique_ptr<CheckpointHolder> checkpoints_;  // PROTOCOL.md 14: presented by resumer_
  std::unique_ptr<Follower> follower_;
  std::unique_ptr<CheckpointResumer> resumer_;  // uses follower_, checkpoints_ and roam_follow_
  std::unique_ptr<DeviceAddressWatcher> watcher_;
  std::unique_ptr<LinkRebinder> rebinder_;
  std::unique_ptr<HostAddressWatcher> host_watcher_;
  UvHandle<uv_timer_t> rebind_timer_;
  UvHandle<uv_timer_t> rebind_soon_timer_;
  UvHandle<uv_signal_t> address_signal_;
  std::string address_file_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::unordered_map<KernelSplice*, std::unique_ptr<KernelSplice>> splices_;
  SocksUsers socks_users_;
  std::unordered_map<std::string, IpAddress> socks_hosts_;
  std::vector<std::unique_ptr<SocksListener>> socks_listeners_;
  std::string socks_listeners_text_;
  std::unordered_map<SocksSession*, std::unique_ptr<SocksSession>> socks_sessions_;
  SocksCounters socks_counters_;
  OverlayScope overlay_;
  std::unique_ptr<TransparentGuard> transparent_guard_;
  std::unique_ptr<TransparentListener> transparent_listener_;
  std::unordered_map<MovableSession*, std::unique_ptr<ProxySession>> transparent_sessions_;
  uint64_t transparent_connected_ = 0;
  uint64_t transparent_failures_ = 0;
  std::vector<Follower::ServerMove> socks_moves_;
  static constexpr size_t max_socks_moves = 256;
  RateLimitedLog socks_refusal_log_;
  RateLimitedLog carrier_failure_log_;
  uint64_t carrier_failures_ = 0;
  static constexpr size_t loss_kinds = static_cast<size_t>(PeerLoss::aborted) + 1;
  std::array<RateLimitedLog, loss_kinds> carrier_loss_logs_ = make_loss_logs();
  std::array<uint64_t, loss_kinds> carrier_losses_{};

  CounterRegistry counters_;                // --metrics: reads follower_ and the fields above
  std::unique_ptr<RoamFollow> roam_follow_;  // ROAM_UPDATEs (PROTOCOL.md 13.4); its counters are in counters_
  std::unique_ptr<MetricsServer> metrics_;  // declared last: gone before what it reads

  void register_metrics() {
    register_client_counters(counters_, node_, follower_.get());
    for (PeerLoss reason : {PeerLoss::reset_by_peer, PeerLoss::refused, PeerLoss::connect_timeout,
                            PeerLoss::keepalive_timeout, PeerLoss::retransmission_timeout}) {
      std::string name = std::string("carriers_lost_") + peer_loss_name(reason);
      std::replace(name.begin(), name.end(), ' ', '_');
      counters_.add("app", name, &carrier_losses_[static_cast<size_t>(reason)]);
    }
    counters_.add("app", "carrier_open_failures", &carrier_failures_);
    if (transparent_guard_ && transparent_listener_) {
      counters_.add("transparent", "accepted", &transparent_listener_->counters().accepted);
      counters_.add("transparent", "carried", &transparent_connected_);
      counters_.add("transparent", "carrier_failures", &transparent_failures_);
      counters_.add("transparent", "refused", &transparent_guard_->counters().refused);
      counters_.add("transparent", "refused_late", &transparent_listener_->counters().refused_late);
      counters_.add("transparent", "dropped_not_tcp", &transparent_guard_->counters().not_tcp);
      counters_.add("transparent", "dropped_foreign_source", &transparent_guard_->counters().foreign_source);
      counters_.add_gauge("transparent", "connections", [this] { return transparent_sessions_.size(); });
    }
    counters_.add_gauge("app", "connections", [this] { return splices_.size(); });
    add_connection_losses(counters_);
  }

  static std::array<RateLimitedLog, loss_kinds> make_loss_logs() {
    std::array<RateLimitedLog, loss_kinds> logs;
    logs.fill(RateLimitedLog(std::chrono::seconds(1)));
    return logs;
  }
};

}  // namespace

int main(int argc, char** argv) {
  return roam::run_node_app("roam-client", argc, argv, client_option_specs(), parse_arguments,
                            [](roam::Node& node, ClientOptions& options) {
                              return std::make_unique<Client>(node, std::move(options.forwards), options);
                            });
}
