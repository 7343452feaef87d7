// register_probe: a control-channel client that registers connection ids it does not
// own (issue 11's attack on REGISTER), for tests and the register-flood benchmark. It
// opens one channel to a roam-server (Noise XX, a fresh or given key), registers the ids
// it is told to (or floods frames of random ones), and logs what the server answers:
//   [probe] established
//   [probe] error CODE: TEXT        (one per ERROR)
//   [probe] acm ...                 (an Address Change Message: the attack worked)
//   [probe] ack SEQUENCE STATUS     (the server's answer to our own ACM, --move)
//   [probe] done: errors N acms N   (at exit, after --hold-ms)
// Never a production tool: it only sends what a malicious client could.
#include <uv.h>

#include <csignal>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "apps/channel_cli.hpp"
#include "apps/cli.hpp"
#include "apps/node_app.hpp"
#include "base/clock.hpp"
#include "crypto/handover_mac.hpp"
#include "base/log.hpp"
#include "base/uv_handle.hpp"
#include "stack/control/channel_connection.hpp"
#include "stack/control/owner_proof.hpp"

namespace {

using namespace roam;

const char* usage = R"(Usage: register_probe [OPTIONS] --server ADDR

Opens a control channel to a roam-server and registers connection ids it does not own.

Options:
  --server ADDR         the server's userspace address (its channel port: --channel-port)
  --register ID[,ID]    ids to register (decimal or 0x hex), in one frame
  --repeat N            send that frame N times (default 1)
  --flood FRAMES        then send FRAMES frames of --ids-per-frame random ids
  --ids-per-frame N     default 4096 (the most one REGISTER holds)
  --move ID[,ID]        then claim those connections moved (seed 003: an ACM from a
                        client), from our --addr to --move-to, with a fresh token
  --move-to ADDR        the new address that ACM names (default 198.18.11.9)
  --hold-ms MS          stay this long after sending (default 2000), then exit
  -h, --help            show this help
)";

struct ProbeOptions {
  LinkOptions link;
  ChannelOptions channel;
  IpAddress server;
  std::vector<uint64_t> ids;
  std::vector<uint64_t> move_ids;
  IpAddress move_to = *IpAddress::parse("198.18.11.9");
  size_t repeat = 1;
  size_t flood_frames = 0;
  size_t ids_per_frame = control::max_connection_ids;
  uint64_t hold_ms = 2000;
};

ProbeOptions parse_arguments(int argc, char** argv) {
  ProbeOptions options;
  bool have_server = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf("%s\n%s\n%s", usage, channel_options_help(true).c_str(), link_options_help().c_str());
      std::exit(0);
    }
    if (parse_link_option(argc, argv, i, options.link)) continue;
    if (parse_channel_option(argc, argv, i, options.channel, true)) continue;
    if (arg == "--server") {
      options.server = parse_host(option_value(argc, argv, i), "--server");
      have_server = true;
    } else if (arg == "--register" || arg == "--move") {
      std::string list = option_value(argc, argv, i);
      auto& ids = arg == "--move" ? options.move_ids : options.ids;
      size_t at = 0;
      while (at <= list.size()) {
        size_t comma = list.find(',', at);
        std::string item = list.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
        ids.push_back(std::stoull(item, nullptr, 0));
        if (comma == std::string::npos) break;
        at = comma + 1;
      }
    } else if (arg == "--move-to") {
      options.move_to = parse_host(option_value(argc, argv, i), "--move-to");
    } else if (arg == "--repeat") {
      options.repeat = parse_number(option_value(argc, argv, i), 1000000, "--repeat");
    } else if (arg == "--flood") {
      options.flood_frames = parse_number(option_value(argc, argv, i), 1000000, "--flood");
    } else if (arg == "--ids-per-frame") {
      options.ids_per_frame =
          parse_number(option_value(argc, argv, i), control::max_connection_ids, "--ids-per-frame");
    } else if (arg == "--hold-ms") {
      options.hold_ms = parse_number(option_value(argc, argv, i), 600000, "--hold-ms");
    } else {
      throw ConfigError("unknown argument '" + arg + "' (see --help)");
    }
  }
  if (!have_server) throw ConfigError("--server ADDR is required (see --help)");
  return options;
}

class Probe {
 public:
  Probe(Node& node, const ProbeOptions& options) : node_(node), options_(options), key_(load_identity(options.channel)) {
    auto channel = std::make_unique<control::ControlChannel>(
        crypto::NoisePattern::xx, crypto::NoiseRole::initiator, *key_,
        control::Hello{control::protocol_version, "probe", capability_owner_proof, {}});
    ChannelConnection::Callbacks callbacks;
    callbacks.on_established = [this](ChannelConnection& c) { on_established(c); };
    callbacks.on_message = [this](ChannelConnection&, const control::Message& m) { on_message(m); };
    callbacks.on_closed = [](ChannelConnection&, const std::string& why) {
      logger("app")->info("[probe] channel closed: {}", why);
    };
    connection_ = std::make_unique<ChannelConnection>(node_, std::move(channel), std::move(callbacks));
    auto tcp = TcpConnection::connect(options_.server, options_.channel.port, connection_.get());
    if (!tcp) throw ConfigError("cannot open the channel: " + tcp.error());
    connection_->attach(std::move(tcp.value()), false);
    uv_timer_init(node_.loop(), timer_.get());
    timer_.mark_initialized();
    timer_.get()->data = this;
    node_.kick();
  }

  void shutdown() {
    logger("app")->info("[probe] done: errors {} acms {}", errors_, acms_);
    if (timer_.valid()) timer_.close();
    if (connection_) connection_->close("probe done");
    node_.defer([owned = std::shared_ptr<ChannelConnection>(std::move(connection_))] {});
  }

 private:
  void on_established(ChannelConnection& c) {
    logger("app")->info("[probe] established");
    for (size_t r = 0; r < options_.repeat && !options_.ids.empty(); ++r)
      c.send(control::RegisterConnections{options_.ids});
    std::mt19937_64 random(std::random_device{}());
    for (size_t f = 0; f < options_.flood_frames; ++f) {
      control::RegisterConnections frame;
      frame.connection_ids.resize(options_.ids_per_frame);
      for (auto& id : frame.connection_ids) id = random() | 1;
      if (!c.send(frame)) break;
    }
    if (!options_.move_ids.empty()) {
      // Our own address is the old one: the channel comes from it, as a mover's would.
      control::AddressChange acm;
      acm.sequence = unix_ms() << 10;
      acm.nonce.fill(0x5a);
      acm.issued_at_ms = unix_ms();
      acm.scope = control::AcmScope::connections;
      acm.old_address = *IpAddress::parse(options_.link.address.substr(0, options_.link.address.find('/')));
      acm.new_address = options_.move_to;
      acm.old_port = acm.new_port = 40000;
      acm.connection_ids = options_.move_ids;
      acm.handover_token = crypto::random_handover_token();
      c.send(acm);
    }
    logger("app")->info("[probe] sent");
    uv_timer_start(
        timer_.get(),
        [](uv_timer_t*) noexcept { uv_kill(uv_os_getpid(), SIGTERM); },  // the app's orderly exit
        options_.hold_ms, 0);
  }

  void on_message(const control::Message& message) {
    if (const auto* error = std::get_if<control::ErrorMessage>(&message)) {
      ++errors_;
      logger("app")->info("[probe] error {}: {}", error->code, error->text);
    } else if (const auto* ack = std::get_if<control::Ack>(&message)) {
      const char* status = ack->status == control::AckStatus::applied   ? "applied"
                           : ack->status == control::AckStatus::rebound ? "rebound"
                                                                        : "refused";
      logger("app")->info("[probe] ack {} {}", ack->sequence, status);
    } else if (std::holds_alternative<control::AddressChange>(message)) {
      ++acms_;
      logger("app")->info("[probe] acm received");
    }
  }

  Node& node_;
  ProbeOptions options_;
  std::unique_ptr<crypto::IdentityKey> key_;
  std::unique_ptr<ChannelConnection> connection_;
  UvHandle<uv_timer_t> timer_;
  uint64_t errors_ = 0;
  uint64_t acms_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  return roam::run_node_app("register_probe", argc, argv, parse_arguments,
                            [](roam::Node& node, ProbeOptions& options) { return std::make_unique<Probe>(node, options); });
}
