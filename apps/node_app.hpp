// run_node_app: the main() shared by roam-server and roam-client. Parses arguments, builds
// the Node, its link and the app, shuts down cleanly on SIGINT/SIGTERM, logs the node's
// counters, and tears everything down in order (app, then node) so every libuv close
// callback runs before the loop closes. Exit codes: 0 after a clean run, 2 on bad config.
#pragma once

#include <uv.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <optional>

#include "apps/argument_list.hpp"
#include "apps/cli.hpp"
#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"
#include "base/log.hpp"
#include "tun/udp_link.hpp"

namespace roam {

inline void log_node_counters(const Node& node) {
  const auto& c = node.counters();
  const auto& l = node.link(0).counters();
  // rx foreign: datagrams from a sender the link does not accept (also in rx dropped).
  // dropped in kernel: before the link read them (its sequence filter, a full buffer).
  logger("node")->info(
      "packets in {} (malformed {}, filtered {}), out {}; link rx dropped {}, tx dropped {}, rx foreign {}, "
      "dropped in kernel {}; segments for the device to cut {}, cut here for the segment MAC {} into {}",
      c.rx_packets, c.rx_malformed, c.rx_filtered, c.tx_packets, l.rx_dropped, l.tx_dropped, l.rx_foreign,
      l.rx_dropped_kernel, c.tx_segmented, c.tx_cut, c.tx_cut_pieces);
  logger("node")->info("connections lost: {}", peer_losses_text());
}

// Link rebinds (--udp-roam, and any that reached a link without it).
inline void log_roam_counters(const UdpLink* udp) {
  if (udp == nullptr) return;
  if (const auto* roam = udp->roam()) {
    const auto& r = roam->counters();
    logger("node")->info(
        "link rebinds: keys issued {}, received {}, applied {}, unchanged {}, malformed {}, unknown {}, forged {}, "
        "replayed {}, rate-limited {}; packets from a roamed endpoint with another inner source {}",
        r.keys_issued, r.rebinds, r.rebinds_applied, r.rebinds_unchanged, r.rebinds_malformed, r.rebinds_unknown,
        r.rebinds_forged, r.rebinds_replayed, r.rebinds_rate_limited, r.rx_wrong_inner);
  } else if (udp->rebinds_ignored() > 0) {
    logger("node")->info("link rebinds: {} ignored (no --udp-roam)", udp->rebinds_ignored());
  }
}

// `parse(arguments)` (an ArgumentList: argv with --config expanded by `specs`) returns
// options with a `.link` member; `make_app(node, options)` returns the app, which must
// have `shutdown()`. Both may throw ConfigError; one about an option that came from the
// config file names its file, line and key.
template <typename Parse, typename MakeApp>
int run_node_app(const char* program, int argc, char** argv, const OptionSpecs& specs, Parse parse,
                 MakeApp make_app) {
  // A kernel peer that closes early must surface as EPIPE on that one socket, not kill us.
  std::signal(SIGPIPE, SIG_IGN);
  uv_loop_t* loop = uv_default_loop();
  std::unique_ptr<Node> node;
  std::optional<ArgumentList> arguments;
  decltype(make_app(*node, *static_cast<decltype(parse(*arguments))*>(nullptr))) app;
  UdpLink* udp = nullptr;
  try {
    try {
      arguments.emplace(ArgumentList::from_main(argc, argv, specs));
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s\n", program, e.what());
      return 2;
    }
    auto options = [&] {
      try {
        return parse(*arguments);
      } catch (const ConfigError& e) {
        throw ConfigError(arguments->with_origin(e.what()));
      }
    }();
    TcpConnection::set_dead_peer_policy(options.link.dead_peer);
    TcpConnection::set_send_buffer_autotune(options.link.send_buffer_auto);
    TcpConnection::set_receive_buffer_autotune(options.link.receive_buffer_auto);
    node = std::make_unique<Node>(loop);
    udp = options.link.udp_link = attach_link(*node, options.link);
    app = make_app(*node, options);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 2;
  }
  // Logged only once everything is up, so a start-up error stays the only line printed.
  logger("node")->info("interface up: {}", node->describe_interface(0));
  ShutdownOnSignal shutdown(
      *node, [&] { app->shutdown(); },
      [&] {
        log_node_counters(*node);
        log_roam_counters(udp);
      });
  uv_run(loop, UV_RUN_DEFAULT);
  app.reset();
  uv_run(loop, UV_RUN_DEFAULT);  // close callbacks of the app's handles
  node.reset();
  uv_run(loop, UV_RUN_DEFAULT);
  uv_loop_close(loop);
  return 0;
}

// For tools without config files: `parse(argc, argv)`.
template <typename Parse, typename MakeApp>
int run_node_app(const char* program, int argc, char** argv, Parse parse, MakeApp make_app) {
  return run_node_app(
      program, argc, argv, OptionSpecs{}, [&](ArgumentList& list) { return parse(list.argc(), list.argv()); },
      make_app);
}

}  // namespace roam
