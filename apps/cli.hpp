// Command-line pieces shared by roam-server and roam-client: the link options, building
// the link they describe, and the signal handling that shuts a node down cleanly.
// Configuration errors throw ConfigError (start-up only); main prints one line and exits 2.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "apps/option_spec.hpp"
#include "base/config_error.hpp"
#include "stack/dead_peer.hpp"
#include "stack/node.hpp"
#include "base/ip_address.hpp"
#include "tun/link.hpp"
#include "base/uv_handle.hpp"

namespace roam {

class UdpLink;

struct LinkOptions {
  std::string link;                 // "udp:IP:PORT" or "tun:NAME"
  std::string address;              // this node's lwIP IPv4 address, optionally /PREFIX
  std::string address6;             // optional IPv6 address
  std::vector<std::string> routes;  // "PREFIX=IP:PORT" (udp links)
  std::vector<std::string> udp_allow;  // extra accepted UDP sources, or "any" (udp links)
  std::vector<std::string> udp_roam;   // inner prefixes a link rebind may move (udp links)
  size_t mtu = 1500;
  // --kernel-filter: a udp link's kernel sequence filter (stack/kernel_sequence_filter.hpp).
  bool kernel_filter = true;
  std::string pcap;
  std::string log_level = "info";
  // --dead-peer, --connect-timeout (for every lwIP connection of the process).
  DeadPeerPolicy dead_peer{default_dead_peer_ms, default_connect_timeout_ms};
  static constexpr uint32_t default_dead_peer_ms = 30'000;
  static constexpr uint32_t default_connect_timeout_ms = 10'000;
  // --send-buffer: send buffers sized to the path (auto) or always TCP_SND_BUF (fixed).
  bool send_buffer_auto = true;
  // --receive-buffer: receive windows sized to the path (auto) or always TCP_WND (fixed).
  bool receive_buffer_auto = true;
  // Set by run_node_app once the link is built: the UDP link (owned by the node), or
  // nullptr for a TUN link.
  UdpLink* udp_link = nullptr;
};

// The help text for the options above (and the dead-peer ones), for a program's --help.
std::string link_options_help();

// The link options' shapes, for config files (apps/config_file.hpp).
OptionSpecs link_option_specs();

// The help text of --config.
std::string config_option_help();

// If argv[i] is one of the link options, consumes it (and its value) and returns true.
bool parse_link_option(int argc, char** argv, int& i, LinkOptions& options);

// Takes the value of option argv[i]; throws ConfigError when missing.
std::string option_value(int argc, char** argv, int& i);
unsigned long parse_number(const std::string& text, unsigned long max, const std::string& what);
// The value of an on|off option: throws ConfigError "bad OPTION 'VALUE': expected on or off".
bool parse_on_off(const std::string& value, const char* option);
// A port option's value, 1-65535 (parse_number's errors, or "OPTION must be 1-65535" for 0).
uint16_t parse_port(const std::string& text, const char* option);

// Builds the link, adds it to the node with the configured addresses. Throws ConfigError.
// Returns the UDP link (owned by the node) or nullptr for a TUN link.
UdpLink* attach_link(Node& node, const LinkOptions& options);

// Parses "IP" or "[IPv6]" host text.
IpAddress parse_host(const std::string& text, const std::string& what);

// Clean shutdown on the first SIGINT or SIGTERM: `close_sessions` closes every connection
// (FIN where possible), then after a short linger that lets lwIP send those FINs, `on_last`
// runs and the node releases its links, so the loop ends. A second signal exits at once.
class ShutdownOnSignal {
 public:
  ShutdownOnSignal(Node& node, std::function<void()> close_sessions, std::function<void()> on_last);
  // Starts the same sequence without a signal.
  void begin();

 private:
  static void on_signal_cb(uv_signal_t* handle, int signum) noexcept;
  static void on_linger_done(uv_timer_t* timer) noexcept;
  Node& node_;
  std::function<void()> close_sessions_;
  std::function<void()> on_last_;
  UvHandle<uv_signal_t> sigint_;
  UvHandle<uv_signal_t> sigterm_;
  UvHandle<uv_timer_t> linger_;
  bool fired_ = false;
};

}  // namespace roam
