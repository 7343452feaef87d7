#include "apps/cli.hpp"

#include <csignal>
#include <cstdlib>

#include "base/log.hpp"
#include "tun/pcap_tap.hpp"
#include "tun/pcap_writer.hpp"
#include "tun/tun_link.hpp"
#include "tun/udp_link.hpp"

namespace roam {

std::string link_options_help() {
  return R"(Link options:
  --link udp:IP:PORT     carry IP packets in UDP datagrams from this local socket
                         (no privilege needed; peers are set with --route)
  --link tun:NAME        use TUN device NAME: created if we have CAP_NET_ADMIN, else a
                         persistent device made once by root with
                         `ip tuntap add mode tun user $USER name NAME`. Uses checksum
                         and segmentation offload (64 KiB TCP writes, the kernel cuts
                         them to the MTU) when the kernel allows it
  --link tun:NAME,no-offload  the same without offloads: one write per MTU-sized packet
  --link tun:NAME,no-uring    one read() per packet instead of io_uring batches
  --addr IPv4[/LEN]      this node's own address in its userspace stack (required)
  --addr6 IPv6           an IPv6 address as well (optional)
  --route PREFIX=IP:PORT udp link: send packets for PREFIX to that UDP endpoint
                         (repeatable; longest prefix wins)
  --udp-allow ADDR[/LEN][:PORT]  udp link: also take datagrams from these sources
                         (repeatable; no port: any port; [IPv6/LEN]:PORT for IPv6).
                         By default a udp link takes datagrams only from its routes'
                         endpoints, since each carries an IP packet for the stack;
                         `--udp-allow any` takes them from anywhere
  --udp-roam PREFIX      udp link, server: clients inside PREFIX (inner addresses) may
                         move their UDP endpoint with an authenticated link rebind
                         (a new client address, a NAT that rebinds; PROTOCOL.md 3.8).
                         Each gets a link key on its control channel; the route for its
                         inner address then follows the endpoint its last valid rebind
                         came from (repeatable; default: none, routes stay static)
  --kernel-filter on|off udp link: the kernel drops blind forgeries (a far-off
                         sequence number) of the 64 busiest connections before they are
                         read, with a socket filter kept in step with lwIP every 10 ms;
                         counted in rx_dropped_kernel. tun link (roam-server, root or
                         CAP_BPF): during a SYN flood the kernel drops each SYN's first
                         copy before it is queued to us (syn_first_dropped_kernel).
                         Everything else is checked in userspace as before; none with
                         --pcap (default on)
  --mtu N                link MTU, 576-65535 (default 1500)
  --pcap FILE            write every packet sent and received on the link to FILE
  --log-level LEVEL      trace, debug, info, warn, error, off (default info)

Dead peers (every carrier and control channel of this process):
  --dead-peer SECONDS    a peer silent this long is dead: its connections are reset
                         (the local app behind roam-client sees a reset) and logged.
                         Idle connections send keepalive probes after a third of it.
                         3-86400, or 0 for never (default 30). Below about 20 s a
                         connection whose server moves (up to ~10 s of silence) may
                         be cut
  --connect-timeout SECONDS  an active open (carrier, control channel) without an
                         answer this long fails (roam-client resets the local app).
                         1-600, or 0 for lwIP's SYN retries, about 21 s (default 10)

Send buffers and receive windows (every connection of this process):
  --send-buffer MODE     auto: each connection may queue 64 KiB at first, growing with
                         its path's measured bandwidth-delay product up to 4 MiB (less
                         for a move to carry, less memory per busy connection); fixed:
                         always 4 MiB, lwIP's TCP_SND_BUF (default auto)
  --receive-buffer MODE  auto: each connection lets its peer send 64 KiB ahead of what
                         the app read at first, growing (as Linux's autotuning) while
                         the app reads a window per round trip, up to 4 MiB (an app
                         that stops reading holds less, and a move carries less);
                         fixed: always 4 MiB, lwIP's TCP_WND (default auto)
)";
}

OptionSpecs link_option_specs() {
  using Kind = OptionSpec::Kind;
  return {
      {"link", "--link", Kind::value, false},         {"addr", "--addr", Kind::value, false},
      {"addr6", "--addr6", Kind::value, false},       {"route", "--route", Kind::value, true},
      {"udp-allow", "--udp-allow", Kind::value, true}, {"mtu", "--mtu", Kind::value, false},
      {"pcap", "--pcap", Kind::value, false},         {"log-level", "--log-level", Kind::value, false},
      {"dead-peer", "--dead-peer", Kind::value, false}, {"connect-timeout", "--connect-timeout", Kind::value, false},
      {"udp-roam", "--udp-roam", Kind::value, true},  {"send-buffer", "--send-buffer", Kind::value, false},
      {"receive-buffer", "--receive-buffer", Kind::value, false},
      {"kernel-filter", "--kernel-filter", Kind::value, false},
  };
}

std::string config_option_help() {
  return R"(Config file:
  --config FILE          read options from FILE (TOML): each key is a long option
                         without its --, e.g. `listen = 7000`, `addr = "198.18.12.2"`,
                         `route = ["198.18.11.0/24=127.0.0.1:7101"]` (repeatable options
                         take a list), `status-open = true` (options without a value
                         take true or false). An option given on the command line
                         replaces the file's (a repeatable one: the whole list).
                         Errors name the file, line and key
)";
}

std::string option_value(int argc, char** argv, int& i) {
  std::string name = argv[i];
  if (i + 1 >= argc) throw ConfigError("option " + name + " needs a value");
  return argv[++i];
}

unsigned long parse_number(const std::string& text, unsigned long max, const std::string& what) {
  if (text.empty() || text.size() > 10) throw ConfigError("bad " + what + ": '" + text + "'");
  unsigned long value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') throw ConfigError("bad " + what + ": '" + text + "'");
    value = value * 10 + static_cast<unsigned long>(c - '0');
  }
  if (value > max) throw ConfigError(what + " out of range: " + text);
  return value;
}

bool parse_on_off(const std::string& value, const char* option) {
  if (value != "on" && value != "off")
    throw ConfigError("bad " + std::string(option) + " '" + value + "': expected on or off");
  return value == "on";
}

uint16_t parse_port(const std::string& text, const char* option) {
  const unsigned long port = parse_number(text, 65535, option);
  if (port == 0) throw ConfigError(std::string(option) + " must be 1-65535");
  return static_cast<uint16_t>(port);
}

IpAddress parse_host(const std::string& text, const std::string& what) {
  std::string host = text;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  auto address = IpAddress::parse(host);
  if (!address) throw ConfigError("bad " + what + ": '" + text + "' is not an IP address");
  return *address;
}

bool parse_link_option(int argc, char** argv, int& i, LinkOptions& options) {
  std::string arg = argv[i];
  if (arg == "--link")
    options.link = option_value(argc, argv, i);
  else if (arg == "--addr")
    options.address = option_value(argc, argv, i);
  else if (arg == "--addr6")
    options.address6 = option_value(argc, argv, i);
  else if (arg == "--route")
    options.routes.push_back(option_value(argc, argv, i));
  else if (arg == "--udp-allow")
    options.udp_allow.push_back(option_value(argc, argv, i));
  else if (arg == "--udp-roam")
    options.udp_roam.push_back(option_value(argc, argv, i));
  else if (arg == "--mtu")
    options.mtu = parse_number(option_value(argc, argv, i), 65535, "--mtu");
  else if (arg == "--pcap")
    options.pcap = option_value(argc, argv, i);
  else if (arg == "--kernel-filter")
    options.kernel_filter = parse_on_off(option_value(argc, argv, i), "--kernel-filter");
  else if (arg == "--dead-peer") {
    auto seconds = parse_number(option_value(argc, argv, i), 86400, "--dead-peer");
    if (seconds != 0 && seconds < 3) throw ConfigError("--dead-peer must be 0 (never) or 3 to 86400 seconds");
    options.dead_peer.dead_after_ms = static_cast<uint32_t>(seconds * 1000);
  } else if (arg == "--connect-timeout") {
    auto seconds = parse_number(option_value(argc, argv, i), 600, "--connect-timeout");
    options.dead_peer.connect_timeout_ms = static_cast<uint32_t>(seconds * 1000);
  }
  else if (arg == "--send-buffer") {
    std::string mode = option_value(argc, argv, i);
    if (mode != "auto" && mode != "fixed") throw ConfigError("--send-buffer takes auto or fixed, not '" + mode + "'");
    options.send_buffer_auto = mode == "auto";
  } else if (arg == "--receive-buffer") {
    std::string mode = option_value(argc, argv, i);
    if (mode != "auto" && mode != "fixed") throw ConfigError("--receive-buffer takes auto or fixed, not '" + mode + "'");
    options.receive_buffer_auto = mode == "auto";
  } else if (arg == "--log-level") {
    options.log_level = option_value(argc, argv, i);
    if (!set_log_level(options.log_level)) throw ConfigError("unknown log level '" + options.log_level + "'");
  } else {
    return false;
  }
  return true;
}

UdpLink* attach_link(Node& node, const LinkOptions& options) {
  if (options.address.empty()) throw ConfigError("--addr is required (this node's own IPv4 address)");
  auto prefix = IpPrefix::parse(options.address);
  if (!prefix || prefix->address.version != 4) throw ConfigError("bad --addr '" + options.address + "'");
  InterfaceConfig interface;
  interface.address4 = prefix->address;
  // A bare address means a point-to-point link: everything else is reached through it.
  interface.prefix4 = options.address.find('/') == std::string::npos ? 32 : prefix->length;
  if (!options.address6.empty()) {
    auto a6 = IpAddress::parse(options.address6);
    if (!a6 || a6->version != 6) throw ConfigError("bad --addr6 '" + options.address6 + "'");
    interface.address6 = *a6;
  }
  if (options.mtu < 576) throw ConfigError("--mtu must be at least 576");

  std::unique_ptr<Link> link;
  UdpLink* udp = nullptr;
  if (options.link.rfind("udp:", 0) == 0) {
    UdpLinkConfig config;
    config.mtu = options.mtu;
    if (!parse_socket_address(options.link.substr(4), config.bind, config.bind_len))
      throw ConfigError("bad --link '" + options.link + "': expected udp:IP:PORT");
    for (const auto& text : options.routes) {
      auto eq = text.find('=');
      UdpRoute route;
      auto route_prefix = IpPrefix::parse(text.substr(0, eq));
      if (eq == std::string::npos || !route_prefix ||
          !parse_socket_address(text.substr(eq + 1), route.endpoint, route.endpoint_len))
        throw ConfigError("bad --route '" + text + "': expected PREFIX=IP:PORT");
      route.prefix = *route_prefix;
      config.routes.push_back(route);
    }
    if (config.routes.empty()) throw ConfigError("a udp link needs at least one --route PREFIX=IP:PORT");
    for (const auto& text : options.udp_allow) {
      auto allow = parse_udp_allow(text);
      if (!allow) throw ConfigError("bad --udp-allow '" + text + "': expected any or ADDR[/LEN][:PORT]");
      if (allow->any_peer)
        config.allow_any_peer = true;
      else
        config.allow.push_back(allow->rule);
    }
    std::vector<IpPrefix> roam;
    for (const auto& text : options.udp_roam) {
      auto roam_prefix = IpPrefix::parse(text);
      if (!roam_prefix) throw ConfigError("bad --udp-roam '" + text + "': expected a prefix (inner addresses)");
      roam.push_back(*roam_prefix);
    }
    if (!roam.empty()) config.roam = std::make_shared<UdpRoamTable>(std::move(roam));
    auto udp_link = std::make_unique<UdpLink>(node.loop(), std::move(config));
    udp = udp_link.get();
    link = std::move(udp_link);
  } else if (options.link.rfind("tun:", 0) == 0) {
    if (!options.routes.empty()) throw ConfigError("--route applies to udp links only (the kernel routes a TUN)");
    if (!options.udp_allow.empty()) throw ConfigError("--udp-allow applies to udp links only");
    if (!options.udp_roam.empty()) throw ConfigError("--udp-roam applies to udp links only");
    TunLinkConfig config{options.link.substr(4), options.mtu, true};
    if (auto comma = config.name.find(','); comma != std::string::npos) {
      std::string rest = config.name.substr(comma + 1);
      config.name.resize(comma);
      while (!rest.empty()) {
        auto next = rest.find(',');
        std::string option = rest.substr(0, next);
        rest = next == std::string::npos ? "" : rest.substr(next + 1);
        if (option == "no-offload")
          config.offload = false;
        else if (option == "no-uring")
          config.uring = false;
        else
          throw ConfigError("bad --link '" + options.link + "': tun options are ,no-offload and ,no-uring");
      }
    }
    link = std::make_unique<TunLink>(node.loop(), std::move(config));
  } else {
    throw ConfigError(options.link.empty() ? "--link is required (udp:IP:PORT or tun:NAME)"
                                           : "bad --link '" + options.link + "': expected udp:IP:PORT or tun:NAME");
  }
  if (!options.pcap.empty()) {
    auto writer = PcapWriter::open(options.pcap);
    if (!writer) throw ConfigError(writer.error());
    link = std::make_unique<PcapTap>(std::move(link), std::move(writer.value()));
  }
  node.set_kernel_sequence_filter(options.kernel_filter);
  auto added = node.add_interface(std::move(link), interface);
  if (!added) throw ConfigError(added.error());
  return udp;
}

ShutdownOnSignal::ShutdownOnSignal(Node& node, std::function<void()> close_sessions, std::function<void()> on_last)
    : node_(node), close_sessions_(std::move(close_sessions)), on_last_(std::move(on_last)) {
  for (auto* handle : {&sigint_, &sigterm_}) {
    uv_signal_init(node_.loop(), handle->get());
    handle->mark_initialized();
    handle->get()->data = this;
  }
  uv_signal_start(sigint_.get(), &ShutdownOnSignal::on_signal_cb, SIGINT);
  uv_signal_start(sigterm_.get(), &ShutdownOnSignal::on_signal_cb, SIGTERM);
  // Signals alone must not keep the loop running once everything else has closed.
  uv_unref(sigint_.base());
  uv_unref(sigterm_.base());
  uv_timer_init(node_.loop(), linger_.get());
  linger_.mark_initialized();
  linger_.get()->data = this;
}

void ShutdownOnSignal::on_signal_cb(uv_signal_t* handle, int signum) noexcept {
  auto* self = static_cast<ShutdownOnSignal*>(handle->data);
  if (self == nullptr) return;
  if (self->fired_) {
    logger("app")->warn("second signal {}: exiting now", signum);
    std::_Exit(1);
  }
  logger("app")->info("signal {}: shutting down", signum);
  self->begin();
}

void ShutdownOnSignal::begin() {
  if (fired_) return;
  fired_ = true;
  try {
    close_sessions_();
  } catch (const std::exception& e) {
    logger("app")->error("while closing sessions: {}", e.what());
  }
  node_.kick();
  constexpr uint64_t linger_ms = 300;
  uv_timer_start(linger_.get(), &ShutdownOnSignal::on_linger_done, linger_ms, 0);
}

void ShutdownOnSignal::on_linger_done(uv_timer_t* timer) noexcept {
  auto* self = static_cast<ShutdownOnSignal*>(timer->data);
  if (self == nullptr) return;
  try {
    if (self->on_last_) self->on_last_();
  } catch (...) {
  }
  self->node_.close();
  self->sigint_.close();
  self->sigterm_.close();
  self->linger_.close();
}

}  // namespace roam
