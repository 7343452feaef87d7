// roam-server: the server-side shim. Accepts carrier connections in its userspace stack
// and serves a built-in app (echo, discard, files), relays each carrier to a kernel TCP
// backend, or proxies it to an origin over a carrier of its own (DESIGN.md section 2).
#include <arpa/inet.h>
#include <sys/stat.h>
#include <uv.h>

#include <cstdio>
#include <memory>
#include <unordered_map>

#include "apps/builtin_sessions.hpp"
#include "apps/channel_cli.hpp"
#include "apps/checkpoint_service.hpp"
#include "apps/cli.hpp"
#include "apps/echo_app.hpp"
#include "apps/files_app.hpp"
#include "apps/heap_warmup.hpp"
#include "apps/metrics_server.hpp"
#include "apps/metrics_text.hpp"
#include "apps/relay_session.hpp"
#include "apps/proxy_session.hpp"
#include "stack/defense/source_whitelist.hpp"
#include "apps/roam_pool_service.hpp"
#include "stack/defense/syn_defense.hpp"
#include "stack/defense/whitelist_filter.hpp"
#include "stack/migrate/follower.hpp"
#include "stack/migrate/migration_service.hpp"
#include "apps/node_app.hpp"
#include "stack/tcp_listener.hpp"
#include "base/log.hpp"
#include "base/rate_limited_log.hpp"
#include "tun/udp_link.hpp"

namespace {

using namespace roam;

const char* usage = R"(Usage: roam-server [OPTIONS] MODE

Accepts carrier TCP connections on this node's userspace (lwIP) address and serves them.

Modes:
  echo                   send every byte back
  discard                read and drop every byte (a sink for benchmarks)
  files --root DIR       resumable file service: the client sends `NAME[ OFFSET]\n` and
                         gets the file DIR/NAME from OFFSET to its end
  relay --backend HOST:PORT
                         connect each carrier to a kernel TCP backend and copy bytes
                         both ways. Relay sessions do NOT move: the backend's kernel
                         socket is local to this host. `roamctl status` lists them under
                         "unmovable" with that reason; `roamctl migrate` leaves them
                         here and counts them in its answer: 1 stayed: 1 relay. To
                         move a service's sessions, run the relay as its origin and
                         `proxy` in front of it
  proxy --origin IP:PORT
                         the movable front of a service: each carrier is spliced to a
                         carrier of this server's own to the origin, a roam-server in
                         relay mode beside the service (IP: the origin's userspace
                         address, IPv4 or [IPv6]; PORT: its --listen port). Both legs
                         move with the session. The proxy opens a control channel to
                         the origin (--channel-port, with --key) and each origin leg
                         proves in its SYN that this key owns it. When the origin
                         refuses a leg or cannot be reached (about 20 s of SYN
                         retries), the client's connection is reset and one line says why

Sessions of echo, discard, files and proxy move live to another roam-server with
`roamctl migrate --from THIS_CONTROL --to OTHER_CONTROL`: their connections stay open and
byte-exact, and each client is told where the server went by an authenticated Address
Change Message on its control channel (clients open one to each server they use).

Options:
  --listen PORT          carrier port to accept on (default 7000)
  --echo-port PORT       also serve echo on this userspace port, beside MODE (one
                         server with a file service and an echo service, e.g. a
                         roaming pool's test). Default: off
  --control IP:PORT      kernel TCP port for roamctl and for sessions arriving from other
                         servers. Every connection is a Noise XX handshake; requests
                         are checked against the peer's key (docs/SECURITY.md).
                         Default: none (no moves in or out)
  --operators FILE       the roamctl keys that may start moves and read status: one
                         base64 public key per line, then an optional comment
                         (`roamctl genkey --out op.key` prints one). Default: nobody
  --pool-cert FILE       this server's pool membership: the certificate
                         `roamctl pool admit` made for its --key. Sessions move only
                         between members of one pool, and clients follow a move only
                         to a member. Default: in no pool (no moves in or out)
  --status-open          answer `roamctl status` from any key, not only operators
  --move-timeout SECONDS a move the target has not fully answered in this time is
                         abandoned and its sessions resume here (default 10)
  --precopy auto|on|off  pre-copy: a move first sends each connection's queued bytes
                         (send queue, unread input) to the target while it keeps
                         running here, then freezes it and sends only what changed.
                         Only to a target that announces it (older servers do not:
                         the move then sends whole snapshots, as before). auto
                         (default): only when the moving connections queue more than
                         128 KiB; on: whenever the target takes it; off: never, and
                         this server does not announce it to servers moving here
  --precopy-rounds N     at most N pre-copy rounds before the freeze (1-8, default 2);
                         a round that moved under 64 KiB is the last
  --precopy-hold on|off  after the rounds, one more while each moving download
                         stops queueing file bytes (TCP still sends what is
                         queued), so the freeze carries almost no stream bytes
                         (default on)
  --control-keep on|off  keep the authenticated control connection to each move
                         target open after the move and start the next move there
                         on it (and, with --roam-pool, open one to each member's
                         control port at startup); pinged when idle, reopened when
                         found dead (default on; off: a new connection per move)
  --protect-older-than SECONDS
                         long-lived policy (seed 003, 3.3): a move takes only
                         connections at least this old; younger ones are closed cleanly
                         (FIN) instead of moved. Default 0: every connection moves
  --syn-cookies off|on|auto|checker
                         SYN cookies in front of every listener (the carrier port and
                         the channel port): a SYN is answered statelessly and the
                         client's ACK makes the connection (docs/SECURITY.md).
                         auto (default): while a listener's half-open connections
                         reach --syn-cookie-trigger of its backlog, and for 30 s after.
                         checker: no cookies; seed 004's probabilistic SYN checker
                         instead, on the same triggers (to compare with cookies)
  --syn-checker-probability PERCENT
                         checker mode: the share of SYNs answered while the checker
                         is on, 0-100 (default 100)
  --flood-detector on|off
                         auto mode: SYN cookies also while the flood detector (a
                         change-point alarm on the SYN rate against its learned
                         baseline, docs/SECURITY.md) is alarmed. Default on
  --flood-detector-warmup SECONDS
                         the detector learns this long before it may alarm (default 30)
  --syn-cookie-trigger PERCENT
                         auto mode's trigger, percent of the backlog of 255 (default 50)
  --half-open-per-prefix N
                         half-open connections one source /24 (IPv6 /64) may hold; its
                         further SYNs get cookies (with --syn-cookies off: are dropped).
                         Default 64, 0: no cap
  --synack-budget N      cookie SYN-ACKs one source /24 (IPv6 /64) gets per second (burst
                         2N); its further SYNs are left unanswered while cookies are on
                         (the answer's write is most of a flooded SYN's cost).
                         Default 100, 0: no budget
  --syn-retx-check auto|off|on
                         answer a SYN that would get a cookie only on its retransmission
                         (same 4-tuple and ISN; the first copy is recorded and dropped):
                         a spoofed flood gets no answers, a legitimate connect costs one
                         SYN retry (~1 s). auto (default): while the link is busy (as
                         the budget), and 1 s after; on: whenever cookies are on
  --connections-per-prefix N
                         connections one source /24 (IPv6 /64) may hold on this
                         server's listeners; more are refused. Default 100000, 0: no cap
  --next-proxy HOST:PORT the Informer (seed 004): the control port of the pool member
                         this server's verified clients go to when it is attacked. When
                         the flood detector alarms (or on `roamctl inform`), it ratifies
                         their addresses there (the next proxy whitelists them), sends
                         each client with a control channel a transfer notification
                         (new connections go to the next proxy) and moves every
                         movable session there. It needs --pool-cert and --control; the
                         next proxy listens on the same ports. Default: none
  --inform-hold SECONDS  whitelist mode lasts this long after an inform, here and at the
                         next proxy (default 60)
  --inform-whitelist on|off
                         after informing, this server too admits only the clients it
                         ratified: every other packet to its listeners is dropped
                         (default on)
  --metrics [IP:]PORT    serve Prometheus metrics at http://IP:PORT/metrics (plain
                         HTTP, no authentication: keep it on loopback or a management
                         network). A bare PORT binds 127.0.0.1, e.g. --metrics 9464.
                         Every counter of `roamctl status` as roamstack_<group>_<name>.
                         Default: off
  --roam-pool FILE       this server is a member of a roaming pool (seed 002,
                         docs/PROTOCOL.md 13): the file names the members (with their
                         control ports), the chain seed and the start time. Each
                         epoch one member is active; the others drop new client
                         connections (--roam-drop). At each roam the member that was
                         active moves its sessions to the new one (needs --control
                         and --pool-cert on every member, all of one pool).
                         `roamctl status` group roam: epoch, active, accepting, moves.
                         Default: no pool
  --roam-epoch SECONDS   the epoch unit (overrides the file's `epoch`)
  --roam-drop syn|all    what a member that is not accepting drops: new connections
                         (syn, default) or every inbound client packet but the
                         channel port's (all)
  --checkpoint-seed FILE push sealed checkpoints of files sessions to their clients and
                         rebuild a dead server's session from one (docs/PROTOCOL.md 14):
                         FILE is a 32-byte secret every server of the pool shares and no
                         client (`roamctl genkey --out FILE`, mode 0600). `roamctl status`
                         group checkpoint. Default: off
  --checkpoint-interval-ms MS
                         how often each session's checkpoint is pushed (0: never; RESUMEs
                         are still answered). Default 1000
  --relay-replay-bytes N relay mode: keep the last N bytes each relayed connection read
                         from the backend, and keep its backend connection open for
                         --relay-linger-ms after its carrier is lost, so that the next
                         proxy can resume a proxy session whose proxy died
                         (docs/PROTOCOL.md 14.8; 16777216 covers every case). Needs
                         --relay-replay-port. `roamctl status` group relay. Default 0: off
  --relay-replay-port PORT
                         relay mode: the port on which next proxies resume relayed
                         connections (RELAY_RESUME, docs/PROTOCOL.md 14.8.4)
  --origin-replay-port PORT
                         proxy mode with --checkpoint-seed: the origin relay's
                         --relay-replay-port; a proxy session rebuilt here from a
                         client's checkpoint resumes its relayed connection there
                         (docs/PROTOCOL.md 14.8.5). Default 0: proxy sessions are not
                         checkpointed
  --relay-linger-ms MS   relay mode with --relay-replay-bytes: how long a relayed
                         connection without carrier waits for a resume. Default 30000
  -h, --help             show this help
)";

struct ServerOptions {
  LinkOptions link;
  std::string mode;
  std::string backend;
  std::string origin_text;
  IpAddress origin;
  uint16_t origin_port = 0;
  std::string root;
  std::string control;
  std::string operators;
  std::string pool_certificate;
  bool status_open = false;
  ChannelOptions channel;
  uint64_t move_timeout_s = 10;
  PrecopyMode precopy = PrecopyMode::automatic;
  uint64_t precopy_rounds = 2;
  bool precopy_hold = true;
  bool control_keep = true;
  uint64_t protect_older_than_s = 0;
  uint16_t port = 7000;
  uint16_t echo_port = 0;  // --echo-port (0: off)
  defense::SynDefenseConfig defense;
  std::string metrics;
  std::string next_proxy;
  uint64_t inform_hold_s = 60;
  bool inform_whitelist = true;
  std::string roam_pool;
  std::optional<uint32_t> roam_epoch_ms;
  std::string checkpoint_seed;
  uint64_t checkpoint_interval_ms = 1000;
  RelayReplayOptions relay_replay;
  uint16_t origin_replay_port = 0;
  RoamDrop roam_drop = RoamDrop::syn;
};

// --origin IP:PORT, IPv6 in brackets: the origin's userspace address and carrier port.
void parse_origin(const std::string& text, IpAddress& address, uint16_t& port) {
  size_t colon = text.rfind(':');
  bool bracketed = !text.empty() && text.front() == '[';
  if (colon == std::string::npos || colon == 0 || (bracketed && text[colon - 1] != ']') ||
      (!bracketed && text.find(':') != colon))
    throw ConfigError("bad --origin '" + text + "': expected IP:PORT ([IPv6]:PORT)");
  address = parse_host(text.substr(0, colon), "--origin address");
  port = static_cast<uint16_t>(parse_number(text.substr(colon + 1), 65535, "--origin port"));
  if (port == 0) throw ConfigError("bad --origin '" + text + "': port 0");
}

// Every option above as a config file key (apps/config_file.hpp); the mode is `mode`.
OptionSpecs server_option_specs() {
  using Kind = OptionSpec::Kind;
  OptionSpecs specs = {
      {"mode", "", Kind::positional, false},
      {"listen", "--listen", Kind::value, false},
      {"echo-port", "--echo-port", Kind::value, false},
      {"backend", "--backend", Kind::value, false},
      {"origin", "--origin", Kind::value, false},
      {"root", "--root", Kind::value, false},
      {"control", "--control", Kind::value, false},
      {"operators", "--operators", Kind::value, false},
      {"pool-cert", "--pool-cert", Kind::value, false},
      {"status-open", "--status-open", Kind::flag, false},
      {"move-timeout", "--move-timeout", Kind::value, false},
      {"precopy", "--precopy", Kind::value, false},
      {"precopy-rounds", "--precopy-rounds", Kind::value, false},
      {"precopy-hold", "--precopy-hold", Kind::value, false},
      {"control-keep", "--control-keep", Kind::value, false},
      {"protect-older-than", "--protect-older-than", Kind::value, false},
      {"metrics", "--metrics", Kind::value, false},
      {"syn-cookies", "--syn-cookies", Kind::value, false},
      {"syn-cookie-trigger", "--syn-cookie-trigger", Kind::value, false},
      {"half-open-per-prefix", "--half-open-per-prefix", Kind::value, false},
      {"connections-per-prefix", "--connections-per-prefix", Kind::value, false},
      {"synack-budget", "--synack-budget", Kind::value, false},
      {"syn-retx-check", "--syn-retx-check", Kind::value, false},
      {"flood-detector", "--flood-detector", Kind::value, false},
      {"flood-detector-warmup", "--flood-detector-warmup", Kind::value, false},
      {"syn-checker-probability", "--syn-checker-probability", Kind::value, false},
      {"next-proxy", "--next-proxy", Kind::value, false},
      {"inform-hold", "--inform-hold", Kind::value, false},
      {"inform-whitelist", "--inform-whitelist", Kind::value, false},
      {"roam-pool", "--roam-pool", Kind::value, false},
      {"roam-epoch", "--roam-epoch", Kind::value, false},
      {"roam-drop", "--roam-drop", Kind::value, false},
      {"checkpoint-seed", "--checkpoint-seed", Kind::value, false},
      {"checkpoint-interval-ms", "--checkpoint-interval-ms", Kind::value, false},
      {"relay-replay-bytes", "--relay-replay-bytes", Kind::value, false},
      {"relay-replay-port", "--relay-replay-port", Kind::value, false},
      {"relay-linger-ms", "--relay-linger-ms", Kind::value, false},
      {"origin-replay-port", "--origin-replay-port", Kind::value, false},
  };
  add_specs(specs, channel_option_specs(false));
  add_specs(specs, link_option_specs());
  return specs;
}

ServerOptions parse_arguments(ArgumentList& arguments) {
  int argc = arguments.argc();
  char** argv = arguments.argv();
  ServerOptions options;
  for (int i = 1; arguments.at(i); ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf("%s\n%s\n%s\n%s", usage, channel_options_help(false).c_str(), link_options_help().c_str(),
                  config_option_help().c_str());
      std::exit(0);
    }
    if (parse_link_option(argc, argv, i, options.link)) continue;
    if (parse_channel_option(argc, argv, i, options.channel, false)) continue;
    if (arg == "--listen") {
      options.port = parse_port(option_value(argc, argv, i), "--listen port");
    } else if (arg == "--echo-port") {
      options.echo_port = parse_port(option_value(argc, argv, i), "--echo-port");
    } else if (arg == "--backend") {
      options.backend = option_value(argc, argv, i);
    } else if (arg == "--origin") {
      options.origin_text = option_value(argc, argv, i);
    } else if (arg == "--root") {
      options.root = option_value(argc, argv, i);
    } else if (arg == "--control") {
      options.control = option_value(argc, argv, i);
    } else if (arg == "--operators") {
      options.operators = option_value(argc, argv, i);
    } else if (arg == "--pool-cert") {
      options.pool_certificate = option_value(argc, argv, i);
    } else if (arg == "--syn-cookies") {
      std::string value = option_value(argc, argv, i);
      auto mode = defense::parse_cookie_mode(value);
      if (!mode) throw ConfigError("bad --syn-cookies '" + value + "': expected off, on, auto or checker");
      options.defense.mode = *mode;
    } else if (arg == "--flood-detector") {
      options.defense.flood_detector = parse_on_off(option_value(argc, argv, i), "--flood-detector");
    } else if (arg == "--syn-checker-probability") {
      auto percent = parse_number(option_value(argc, argv, i), 100, "--syn-checker-probability");
      options.defense.checker_probability = static_cast<double>(percent) / 100.0;
    } else if (arg == "--flood-detector-warmup") {
      auto seconds = parse_number(option_value(argc, argv, i), 3600, "--flood-detector-warmup");
      options.defense.detector.warmup_bins = seconds * 1000 / options.defense.detector.bin_ms;
    } else if (arg == "--syn-cookie-trigger") {
      auto percent = parse_number(option_value(argc, argv, i), 100, "--syn-cookie-trigger");
      if (percent == 0) throw ConfigError("--syn-cookie-trigger must be 1-100 percent");
      options.defense.trigger_fraction = static_cast<double>(percent) / 100.0;
    } else if (arg == "--half-open-per-prefix") {
      options.defense.half_open_per_prefix = parse_number(option_value(argc, argv, i), 1'000'000, "--half-open-per-prefix");
    } else if (arg == "--synack-budget") {
      const auto per_second = parse_number(option_value(argc, argv, i), 1'000'000, "--synack-budget");
      options.defense.synack_budget.per_second = static_cast<uint32_t>(per_second);
      options.defense.synack_budget.burst = static_cast<uint32_t>(2 * per_second);
    } else if (arg == "--syn-retx-check") {
      std::string value = option_value(argc, argv, i);
      auto check = defense::parse_retx_check(value);
      if (!check) throw ConfigError("bad --syn-retx-check '" + value + "': expected auto, off or on");
      options.defense.syn_retx_check = *check;
    } else if (arg == "--connections-per-prefix") {
      options.defense.established_per_prefix =
          parse_number(option_value(argc, argv, i), 100'000'000, "--connections-per-prefix");
    } else if (arg == "--next-proxy") {
      options.next_proxy = option_value(argc, argv, i);
    } else if (arg == "--inform-hold") {
      options.inform_hold_s = parse_number(option_value(argc, argv, i), 86400, "--inform-hold");
      if (options.inform_hold_s == 0) throw ConfigError("--inform-hold must be 1-86400 seconds");
    } else if (arg == "--inform-whitelist") {
      options.inform_whitelist = parse_on_off(option_value(argc, argv, i), "--inform-whitelist");
    } else if (arg == "--metrics") {
      options.metrics = option_value(argc, argv, i);
    } else if (arg == "--status-open") {
      options.status_open = true;
    } else if (arg == "--move-timeout") {
      options.move_timeout_s = parse_number(option_value(argc, argv, i), 3600, "--move-timeout");
      if (options.move_timeout_s == 0) throw ConfigError("--move-timeout must be 1-3600 seconds");
    } else if (arg == "--precopy") {
      std::string value = option_value(argc, argv, i);
      if (value == "auto")
        options.precopy = PrecopyMode::automatic;
      else if (value == "on")
        options.precopy = PrecopyMode::on;
      else if (value == "off")
        options.precopy = PrecopyMode::off;
      else
        throw ConfigError("bad --precopy '" + value + "': expected auto, on or off");
    } else if (arg == "--control-keep") {
      options.control_keep = parse_on_off(option_value(argc, argv, i), "--control-keep");
    } else if (arg == "--precopy-hold") {
      options.precopy_hold = parse_on_off(option_value(argc, argv, i), "--precopy-hold");
    } else if (arg == "--precopy-rounds") {
      options.precopy_rounds = parse_number(option_value(argc, argv, i), 8, "--precopy-rounds");
      if (options.precopy_rounds == 0) throw ConfigError("--precopy-rounds must be 1-8");
    } else if (arg == "--protect-older-than") {
      options.protect_older_than_s = parse_number(option_value(argc, argv, i), 86400, "--protect-older-than");
    } else if (arg == "--roam-pool") {
      options.roam_pool = option_value(argc, argv, i);
    } else if (arg == "--checkpoint-seed") {
      options.checkpoint_seed = option_value(argc, argv, i);
    } else if (arg == "--checkpoint-interval-ms") {
      options.checkpoint_interval_ms = parse_number(option_value(argc, argv, i), 3'600'000, "--checkpoint-interval-ms");
    } else if (arg == "--relay-replay-bytes") {
      options.relay_replay.replay_bytes = parse_number(option_value(argc, argv, i), 1ul << 30, "--relay-replay-bytes");
    } else if (arg == "--relay-replay-port") {
      options.relay_replay.port = parse_port(option_value(argc, argv, i), "--relay-replay-port");
    } else if (arg == "--origin-replay-port") {
      options.origin_replay_port = parse_port(option_value(argc, argv, i), "--origin-replay-port");
    } else if (arg == "--relay-linger-ms") {
      options.relay_replay.linger_ms = parse_number(option_value(argc, argv, i), 3'600'000, "--relay-linger-ms");
    } else if (arg == "--roam-epoch") {
      auto seconds = parse_number(option_value(argc, argv, i), 86400, "--roam-epoch");
      if (seconds == 0) throw ConfigError("--roam-epoch must be 1-86400 seconds");
      options.roam_epoch_ms = static_cast<uint32_t>(seconds * 1000);
    } else if (arg == "--roam-drop") {
      std::string value = option_value(argc, argv, i);
      if (value != "syn" && value != "all") throw ConfigError("bad --roam-drop '" + value + "': expected syn or all");
      options.roam_drop = value == "all" ? RoamDrop::all : RoamDrop::syn;
    } else if (!arg.empty() && arg[0] != '-' && options.mode.empty()) {
      options.mode = arg;
    } else {
      throw ConfigError("unknown argument '" + arg + "' (see --help)");
    }
  }
  if (options.mode.empty()) throw ConfigError("no mode given: echo, discard, files, relay or proxy (see --help)");
  if (options.mode != "echo" && options.mode != "discard" && options.mode != "relay" && options.mode != "files" &&
      options.mode != "proxy")
    throw ConfigError("unknown mode '" + options.mode + "': expected echo, discard, files, relay or proxy");
  if (options.mode == "files" && options.root.empty()) throw ConfigError("files needs --root DIR");
  if (options.mode != "files" && !options.root.empty()) throw ConfigError("--root applies to files only");
  if (!options.root.empty()) {
    struct stat info {};
    if (stat(options.root.c_str(), &info) != 0 || !S_ISDIR(info.st_mode))
      throw ConfigError("--root '" + options.root + "' is not a directory");
  }
  if (options.mode == "relay" && options.backend.empty()) throw ConfigError("relay needs --backend HOST:PORT");
  if (options.mode != "relay" && !options.backend.empty()) throw ConfigError("--backend applies to relay only");
  if (options.mode == "proxy" && options.origin_text.empty()) throw ConfigError("proxy needs --origin IP:PORT");
  if (options.relay_replay.replay_bytes != 0 && options.mode != "relay")
    throw ConfigError("--relay-replay-bytes applies to relay only");
  if ((options.relay_replay.replay_bytes != 0) != (options.relay_replay.port != 0))
    throw ConfigError("--relay-replay-bytes and --relay-replay-port go together");
  if (options.origin_replay_port != 0 && options.mode != "proxy")
    throw ConfigError("--origin-replay-port applies to proxy only");
  if (options.mode != "proxy" && !options.origin_text.empty()) throw ConfigError("--origin applies to proxy only");
  if (options.mode == "proxy") {
    parse_origin(options.origin_text, options.origin, options.origin_port);
    if (options.origin.version == 6 && options.link.address6.empty())
      throw ConfigError("--origin " + options.origin_text + " is IPv6: this node needs an --addr6");
  }
  if (!options.next_proxy.empty() && (options.control.empty() || options.pool_certificate.empty()))
    throw ConfigError("--next-proxy needs --control and --pool-cert: clients are sent only to a pool member");
  if (options.roam_pool.empty() && options.roam_epoch_ms) throw ConfigError("--roam-epoch needs --roam-pool");
  return options;
}

IpAddress address_without_prefix(const std::string& text) {
  return parse_host(text.substr(0, text.find('/')), "--addr");
}

class Server final : public SessionTable {
 public:
  Server(Node& node, const ServerOptions& options) : node_(node), options_(options) {
    // Before the SYN defense in the same stage: a source not on the whitelist costs no
    // cookie. Idle until an inform or a RATIFY turns whitelist mode on.
    whitelist_filter_ = std::make_unique<defense::WhitelistFilter>(node_, whitelist_);
    // First: it watches every listener, the channel port's too.
    defense_ = std::make_unique<defense::SynDefense>(node_, options_.defense);
    if (options_.mode == "relay" && !parse_socket_address(options_.backend, backend_, backend_len_))
      throw ConfigError("bad --backend '" + options_.backend + "': expected IP:PORT");
    kinds_ = builtin_session_kinds(SessionContext{&node_, options_.root});
    if (options_.mode == "proxy") {
      OpenResumedOrigin open_resumed;
      if (options_.origin_replay_port != 0)
        open_resumed = [this](ProxySession& session) { open_origin_leg(session, options_.origin_replay_port); };
      add_proxy_session_kind(kinds_, node_, open_resumed, proxy_hooks());
    }
    MigrationConfig migration;
    migration.control = options_.control;
    migration.operators_file = options_.operators;
    migration.pool_certificate_file = options_.pool_certificate;
    migration.status_open = options_.status_open;
    migration.channel = options_.channel;
    migration.move_timeout_ms = options_.move_timeout_s * 1000;
    migration.precopy = options_.precopy;
    migration.keep_control = options_.control_keep;
    migration.precopy_max_rounds = options_.precopy_rounds;
    migration.precopy_hold_output = options_.precopy_hold;
    migration.protect_older_than_ms = options_.protect_older_than_s * 1000;
    migration.address4 = address_without_prefix(options_.link.address);
    if (!options_.link.address6.empty()) migration.address6 = address_without_prefix(options_.link.address6);
    migration.next_proxy = options_.next_proxy;
    migration.inform_hold_ms = options_.inform_hold_s * 1000;
    migration.whitelist_after_inform = options_.inform_whitelist;
    migration.whitelist = [this](std::span<const IpAddress> addresses, uint64_t hold_ms) {
      const uint64_t now = uv_now(node_.loop());
      const bool was_active = whitelist_.active(now);
      size_t added = whitelist_.add(addresses);
      whitelist_.activate(now, hold_ms);
      logger("defense")->warn("whitelist mode {} for {} s: {} address(es) listed ({} new); every other source is "
                              "dropped at the listeners",
                              was_active ? "extended" : "on", hold_ms / 1000, whitelist_.size(), added);
    };
    if (options_.link.udp_link != nullptr && options_.link.udp_link->roam() != nullptr) {
      UdpRoamTable* roam = options_.link.udp_link->roam();
      migration.link_key_issuer = [roam](const IpAddress& inner) { return roam->issue_key(inner); };
      migration.link_roam = roam;
    } else if (!options_.link.udp_roam.empty()) {
      throw ConfigError("--udp-roam needs a udp link");
    }
    migration_ = std::make_unique<MigrationService>(node_, *this, migration);
    if (!options_.roam_pool.empty()) {
      std::vector<IpAddress> own{migration.address4};
      if (migration.address6) own.push_back(*migration.address6);
      RoamPoolService::Parts parts{&migration_->channels(), options_.channel.port, migration_.get(), this};
      roam_ = std::make_unique<RoamPoolService>(node_, options_.roam_pool, options_.roam_epoch_ms, own,
                                                options_.roam_drop, migration_->registry(), parts);
      // The members' control ports: connected before the first roam moves anything there.
      for (const auto& control : roam_->member_controls())
        if (!control.empty()) migration_->keep_control_to(control);
    }
    if (!options_.checkpoint_seed.empty()) {
      if (options_.mode != "files" && !(options_.mode == "proxy" && options_.origin_replay_port != 0))
        throw ConfigError("--checkpoint-seed applies to files, and to proxy with --origin-replay-port (docs/PROTOCOL.md 14.6)");
      checkpoints_ = std::make_unique<CheckpointService>(node_, *this, *migration_, options_.checkpoint_seed,
                                                         options_.checkpoint_interval_ms);
      // A member a client left for dead gets no roam moves of this server's for a while.
      if (roam_)
        checkpoints_->set_on_resumed([roam = roam_.get()](const IpAddress& left) { roam->resumed_away_from(left); });
    }
    if (options_.relay_replay.replay_bytes != 0) {
      auto* channels = &migration_->channels();
      relay_resume_ = std::make_unique<RelayResumeService>(
          node_, options_.relay_replay, [channels](const OwnerKey& key) { return channels->pool_of(key); },
          migration_->registry());
    }
    auto listener = TcpListener::listen(options_.port, [this](tcp_pcb* pcb) { return accept(pcb); });
    if (!listener) throw ConfigError(listener.error());
    listener_ = std::move(listener.value());
    if (options_.echo_port != 0) {
      auto echo = TcpListener::listen(options_.echo_port, [this](tcp_pcb* pcb) { return accept_echo(pcb); });
      if (!echo) throw ConfigError("--echo-port: " + echo.error());
      echo_listener_ = std::move(echo.value());
      logger("app")->info("serving echo on port {} too", options_.echo_port);
    }
    if (options_.mode == "proxy") start_origin_channel();
    register_defense_counters();
    if (!options_.next_proxy.empty()) watch_detector();
    if (!options_.metrics.empty()) {
      add_connection_losses(process_counters_);
      metrics_ = std::make_unique<MetricsServer>(node_.loop(), options_.metrics, [this] {
        return metrics_text({&migration_->registry(), &process_counters_, &metrics_->registry()});
      });
    }
    std::string target = options_.mode == "relay"   ? " -> " + options_.backend
                         : options_.mode == "proxy" ? " -> origin " + options_.origin_text
                                                    : "";
    logger("app")->info("serving {} on port {}{}", options_.mode, options_.port, target);
  }

  // Stops accepting and closes every session.
  void shutdown() {
    if (detector_poll_.valid()) detector_poll_.close();
    if (metrics_) metrics_->close();
    if (checkpoints_) checkpoints_->close();
    if (relay_resume_) relay_resume_->close();
    if (listener_) listener_->close();
    if (echo_listener_) echo_listener_->close();
    if (migration_) migration_->shutdown();
    for (auto& [key, session] : sessions_) session->close();
    if (origin_channel_) origin_channel_->close();
  }

  // SessionTable
  std::vector<MovableSession*> sessions() override {
    std::vector<MovableSession*> out;
    out.reserve(sessions_.size());
    for (auto& [raw, session] : sessions_) out.push_back(raw);
    return out;
  }
  size_t session_count() override { return sessions_.size(); }
  void drop(MovableSession* session) override {
    node_.defer([this, session] { sessions_.erase(session); });
  }
  void adopt(std::unique_ptr<MovableSession> session) override {
    MovableSession* raw = session.get();
    sessions_.emplace(raw, std::move(session));
  }
  MovableSession::FinishedFn finished_callback() override {
    return [this](MovableSession* done) { drop(done); };
  }
  const SessionKinds& kinds() const override { return kinds_; }

 private:
  // --echo-port: an echo session beside the mode's (it moves like any echo session).
  bool accept_echo(tcp_pcb* pcb) {
    ++accepted_;
    migration_->connection_accepted(pcb);
    tcp_nagle_disable(pcb);
    adopt(std::make_unique<EchoSession>(node_, EchoSession::Mode::echo, pcb, finished_callback()));
    return true;
  }

  bool accept(tcp_pcb* pcb) {
    ++accepted_;
    migration_->connection_accepted(pcb);
    tcp_nagle_disable(pcb);
    if (options_.mode == "proxy") {
      auto session = std::make_unique<ProxySession>(node_, pcb, finished_callback(), proxy_hooks());
      ProxySession* raw = session.get();
      adopt(std::move(session));
      open_origin_leg(*raw);
      return true;
    }
    std::unique_ptr<MovableSession> session;
    if (options_.mode == "relay") {
      // In the session table although it never moves: status lists it, migrate counts it.
      session = std::make_unique<RelaySession>(node_, pcb, reinterpret_cast<const sockaddr*>(&backend_),
                                               finished_callback(), relay_resume_.get());
    } else if (options_.mode == "files") {
      session = std::make_unique<FilesSession>(node_, options_.root, pcb, finished_callback());
    } else {
      auto mode = options_.mode == "echo" ? EchoSession::Mode::echo : EchoSession::Mode::discard;
      session = std::make_unique<EchoSession>(node_, mode, pcb, finished_callback());
    }
    adopt(std::move(session));
    return true;
  }

  void register_defense_counters() {
    auto& r = migration_->registry();
    const auto& c = defense_->counters();
    r.add("defense", "syn_cookies_sent", &c.syn_cookies_sent);
    r.add("defense", "syn_cookies_ok", &c.syn_cookies_ok);
    r.add("defense", "syn_cookies_bad", &c.syn_cookies_bad);
    r.add("defense", "syn_cookie_import_failed", &c.syn_cookie_import_failed);
    r.add("defense", "syn_cookie_triggers", &c.syn_cookie_triggers);
    r.add("defense", "admission_half_open_cookied", &c.admission_half_open_cookied);
    r.add("defense", "admission_half_open_dropped", &c.admission_half_open_dropped);
    r.add("defense", "admission_established_refused", &c.admission_established_refused);
    r.add("defense", "syn_checker_passed", &c.syn_checker_passed);
    r.add("defense", "syn_checker_dropped", &c.syn_checker_dropped);
    r.add("defense", "syn_checker_triggers", &c.syn_checker_triggers);
    r.add("defense", "synack_budget_dropped", &c.synack_budget_dropped);
    r.add("defense", "syn_first_dropped", &c.syn_first_dropped);
    r.add("defense", "syn_proven_exempt", &c.syn_proven_exempt);
    r.add("defense", "syn_retx_answered", &c.syn_retx_answered);
    // The same check in the kernel (TUN links, tun/tun_syn_check.hpp), read every 100 ms.
    r.add_total("defense", "syn_first_dropped_kernel", [this] { return defense_->kernel_counters().first_dropped; });
    r.add_total("defense", "syn_retx_passed_kernel", [this] { return defense_->kernel_counters().retx_passed; });
    r.add("defense", "syn_check_kernel_switches", &c.syn_check_kernel_switches);
    r.add_gauge("defense", "syn_check_kernel_active", [this] { return defense_->kernel_check_active() ? 1u : 0u; });
    // Whitelist mode (seed 004: after an inform here, or a RATIFY from the attacked member).
    const auto& w = whitelist_filter_->counters();
    r.add("defense", "whitelist_drops", &w.drops);
    r.add("defense", "whitelist_passed", &w.passed);
    r.add_gauge("defense", "whitelist_active", [this] { return whitelist_.active(uv_now(node_.loop())) ? 1u : 0u; });
    r.add_gauge("defense", "whitelist_size", [this] { return static_cast<uint64_t>(whitelist_.size()); });
    // 0 off, 1 on, 2 auto.
    r.add_gauge("defense", "syn_cookie_mode", [this] { return static_cast<uint64_t>(options_.defense.mode); });
    // The flood detector: rates per second, as of the last closed 100 ms bin.
    const auto& detector = defense_->detector();
    r.add_total("defense", "detector_alarms", [&detector] { return detector.state().alarms; });
    r.add_gauge("defense", "detector_alarmed", [&detector] { return detector.alarmed() ? 1u : 0u; });
    r.add_gauge("defense", "detector_syn_rate",
                [&detector] { return static_cast<uint64_t>(detector.state().syn.rate); });
    r.add_gauge("defense", "detector_baseline",
                [&detector] { return static_cast<uint64_t>(detector.state().syn.baseline); });
    r.add_gauge("defense", "detector_cusum", [&detector] { return static_cast<uint64_t>(detector.state().syn.cusum); });
    r.add_gauge("defense", "detector_alarmed_since_ms",
                [&detector] { return detector.alarmed() ? detector.state().alarmed_since_ms : 0u; });
    for (uint16_t port : defense_->ports()) {
      r.add_gauge("defense", "detector_packet_rate_port_" + std::to_string(port), [&detector, port] {
        auto p = detector.packets_of(port);
        return p ? static_cast<uint64_t>(p->rate) : 0u;
      });
    }
    for (uint16_t port : defense_->ports())
      r.add_gauge("defense", "syn_cookies_active_port_" + std::to_string(port),
                  [this, port] { return defense_->cookies_active(port, uv_now(node_.loop())) ? 1u : 0u; });
  }

  // The Informer's trigger: each new alarm of the flood detector informs the next proxy
  // (polled every 100 ms, the detector's bin: the SYN defense keeps no callback list).
  void watch_detector() {
    seen_alarms_ = defense_->detector().state().alarms;
    start_repeating_timer<&Server::on_detector_poll>(detector_poll_, node_.loop(), this, 100, false);
  }
  void on_detector_poll() {
    const uint64_t alarms = defense_->detector().state().alarms;
    if (alarms == seen_alarms_) return;
    seen_alarms_ = alarms;
    if (migration_->informing()) return;
    std::string error;
    if (!migration_->inform("", "flood detector alarm", nullptr, error))
      logger("defense")->error("flood detector alarmed, but the clients cannot be informed: {}", error);
  }

  // Proxy mode: the channel to the origin, as a client of it (a Follower), so that each
  // origin leg proves in its SYN that this server's key owns it.
  void start_origin_channel() {
    ChannelOptions channel = options_.channel;
    // The client side's own options: keys learned for this run only. No segment MAC on
    // origin legs: a second guard beside the channel server's would sign flows twice.
    channel.known_hosts_file.clear();
    channel.pinned = false;
    channel.trusted_pools.clear();
    channel.segment_mac = false;
    // Our pool certificate in the HELLO: the origin then lets another member of our pool
    // move the legs this key owns (docs/PROTOCOL.md 3.7).
    channel.hello_credential = migration_->credential();
    origin_channel_ = std::make_unique<Follower>(node_, channel);
    origin_channel_->prepare(options_.origin);
    // A proxy session imported here brings its origin leg: tell the origin (seed 003,
    // the host whose address changed tells its peer). Its first packet here unparks it.
    migration_->set_tell_origin([this](const migrate::OriginLegMoved& moved) {
      if (origin_channel_)
        origin_channel_->announce_moved({Follower::MovedEnd{moved.pcb, moved.connection_id, moved.old_flow.local}});
    });
  }

  ProxySession::Hooks proxy_hooks() {
    ProxySession::Hooks hooks;
    hooks.on_origin_connected = [this](tcp_pcb* pcb) {
      if (origin_channel_) origin_channel_->track(pcb);
    };
    hooks.on_origin_failed = [this](const std::string& why) {
      ++origin_failures_;
      uint64_t suppressed = 0;
      if (origin_failure_log_.allow(suppressed))
        logger("app")->warn("origin {}: {}; the client's connection is reset ({} in all; {} more not logged)",
                            options_.origin_text, why, origin_failures_, suppressed);
    };
    return hooks;
  }

  // Opens the session's origin leg: after the accept callback returns (no active open
  // from inside lwIP's input), and once the channel to the origin can give the leg its
  // owner proof (or gave up waiting for it, Follower::when_ready).
  void open_origin_leg(ProxySession& session, uint16_t port = 0) {
    if (port == 0) port = options_.origin_port;
    node_.defer([this, raw = &session, lifetime = session.lifetime(), port] {
      if (lifetime.expired() || !origin_channel_) return;
      origin_channel_->when_ready(options_.origin, [this, raw, lifetime, port] {
        if (lifetime.expired()) return;
        auto leg = TcpConnection::connect(options_.origin, port, raw, nullptr,
                                          origin_channel_->syn_option_for(options_.origin));
        if (!leg) {
          raw->fail_origin("cannot open the origin leg: " + leg.error());
          return;
        }
        raw->attach_origin(std::move(leg.value()));
        node_.kick();
      });
    });
    node_.kick();
  }

  Node& node_;
  ServerOptions options_;
  defense::SourceWhitelist whitelist_;
  std::unique_ptr<defense::WhitelistFilter> whitelist_filter_;
  std::unique_ptr<defense::SynDefense> defense_;  // outlives the listeners below
  UvHandle<uv_timer_t> detector_poll_;  // --next-proxy: new detector alarms inform
  uint64_t seen_alarms_ = 0;
  SessionKinds kinds_;
  sockaddr_storage backend_{};
  socklen_t backend_len_ = 0;
  std::unique_ptr<Follower> origin_channel_;  // proxy mode; outlives the sessions
  std::unique_ptr<MigrationService> migration_;
  std::unique_ptr<CheckpointService> checkpoints_;  // --checkpoint-seed; before migration_ dies
  std::unique_ptr<RelayResumeService> relay_resume_;  // --relay-replay-bytes; sessions remove themselves
  std::unique_ptr<RoamPoolService> roam_;  // --roam-pool; its counters live in migration_'s registry
  std::unique_ptr<TcpListener> listener_;
  std::unique_ptr<TcpListener> echo_listener_;  // --echo-port
  CounterRegistry process_counters_;
  std::unique_ptr<MetricsServer> metrics_;  // --metrics; reads migration_ and process_counters_
  std::unordered_map<MovableSession*, std::unique_ptr<MovableSession>> sessions_;
  RateLimitedLog origin_failure_log_;
  uint64_t origin_failures_ = 0;
  size_t accepted_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  bool locked = roam::warm_heap_for_moves(64u << 20);
  return roam::run_node_app(
      "roam-server", argc, argv, server_option_specs(), parse_arguments,
      [locked](roam::Node& node, ServerOptions& options) {
        roam::logger("migrate")->debug("memory {}", locked ? "locked: moves touch no fresh page"
                                                           : "not locked (needs root or an unlimited RLIMIT_MEMLOCK)");
        return std::make_unique<Server>(node, options);
      });
}
