#include "apps/channel_cli.hpp"

#include "apps/cli.hpp"

namespace roam {

bool parse_channel_option(int argc, char** argv, int& i, ChannelOptions& options, bool client) {
  std::string arg = argv[i];
  if (arg == "--channel-port") {
    options.port = parse_port(option_value(argc, argv, i), "--channel-port");
  } else if (arg == "--key") {
    options.key_file = option_value(argc, argv, i);
  } else if (arg == "--host-id") {
    options.host_id = option_value(argc, argv, i);
    if (!crypto::valid_peer_id(options.host_id))
      throw ConfigError("bad --host-id '" + options.host_id + "': 1-64 characters of A-Z a-z 0-9 . _ : -");
  } else if (arg == "--segment-mac") {
    // Bare `--segment-mac` (as before) means on; an explicit on|off may follow.
    options.segment_mac = true;
    if (i + 1 < argc && (std::string(argv[i + 1]) == "on" || std::string(argv[i + 1]) == "off"))
      options.segment_mac = std::string(argv[++i]) == "on";
  } else if (arg == "--handover") {
    std::string mode = option_value(argc, argv, i);
    if (mode != "always" && mode != "off") throw ConfigError("bad --handover '" + mode + "': always or off");
    options.handover = mode == "always";
  } else if (!client && arg == "--require-owner-proof") {
    options.limits.require_owner_proof = true;
  } else if (!client && arg == "--client-moves") {
    options.limits.client_moves = parse_on_off(option_value(argc, argv, i), "--client-moves");
  } else if (client && arg == "--known-hosts") {
    options.known_hosts_file = option_value(argc, argv, i);
  } else if (client && arg == "--trust-pool") {
    std::string text = option_value(argc, argv, i);
    auto pool = crypto::public_key_from_base64(text);
    if (!pool) throw ConfigError("bad --trust-pool '" + text + "': expected a base64 pool public key");
    options.trusted_pools.push_back(*pool);
  } else if (client && arg == "--pin-keys") {
    options.pinned = true;
  } else if (client && arg == "--acm-max-age") {
    options.acm_max_age_ms = parse_number(option_value(argc, argv, i), 3600, "--acm-max-age") * 1000;
    if (options.acm_max_age_ms == 0) throw ConfigError("--acm-max-age must be 1-3600 seconds");
  } else {
    return false;
  }
  return true;
}

OptionSpecs channel_option_specs(bool client) {
  using Kind = OptionSpec::Kind;
  OptionSpecs specs = {
      {"channel-port", "--channel-port", Kind::value, false}, {"key", "--key", Kind::value, false},
      {"host-id", "--host-id", Kind::value, false},           {"segment-mac", "--segment-mac", Kind::on_off, false},
      {"handover", "--handover", Kind::value, false},
  };
  if (client)
    add_specs(specs, {{"known-hosts", "--known-hosts", Kind::value, false},
                      {"trust-pool", "--trust-pool", Kind::value, true},
                      {"pin-keys", "--pin-keys", Kind::flag, false},
                      {"acm-max-age", "--acm-max-age", Kind::value, false}});
  else
    add_specs(specs, {{"require-owner-proof", "--require-owner-proof", Kind::flag, false},
                      {"client-moves", "--client-moves", Kind::value, false}});
  return specs;
}

std::string channel_options_help(bool client) {
  std::string text =
      "Control channel (Noise XX over a userspace TCP connection; Address Change Messages):\n"
      "  --channel-port PORT    userspace TCP port of the control channel (default 7001)\n"
      "  --key FILE             this host's identity key (`roamctl genkey --out FILE`, mode\n"
      "                         0600); default: a fresh key for this run only\n"
      "  --host-id NAME         the name this host gives in its HELLO: clients know servers\n"
      "                         by it in --known-hosts (default: a server's carrier address;\n"
      "                         a client's is \"client\")\n"
      "  --segment-mac [on|off] per-segment MAC on carrier connections (a 16-byte TCP option\n"
      "                         keyed from the control channel) with peers that offer it\n"
      "                         too; segments failing it are dropped. On TUN links with\n"
      "                         offloads, protected connections forgo TSO (each segment signed).\n" +
      std::string(client ? "                         Default on: offered to every server, used with those that\n"
                           "                         sign (the server decides whether its path needs it)\n"
                         : "                         Default off: the operator turns it on where the path between\n"
                           "                         clients and this server is not trusted (clients offer it)\n") +
      "  --handover always|off  NAT handover after a server move (default always): the client\n"
      "                         sends an authenticated synthetic SYN per moved connection so\n"
      "                         a stateful NAT in front of it admits the new path; the new\n"
      "                         server answers it. off: no token, no SYN, no answer\n";
  if (!client)
    text +=
        "  --require-owner-proof  register only connections whose SYN proved their owner\n"
        "                         (the client's channel key); default: a connection without\n"
        "                         the proof is registered by the client's address, and that\n"
        "                         first registration binds its owner\n"
        "  --client-moves on|off  take clients' own moves: a client whose address changed tells\n"
        "                         this server so on its channel and its connections follow it\n"
        "                         (default on). off: such a message is refused (the client\n"
        "                         resets those connections at once and logs why)\n";
  if (client)
    text +=
        "  --known-hosts FILE     server keys met so far (trust on first use; learned keys are\n"
        "                         saved there); default: remembered for this run only\n"
        "  --pin-keys             accept only servers already listed in --known-hosts\n"
        "  --trust-pool KEY       accept only servers that are members of this pool (its\n"
        "                         public key, `roamctl pool pubkey`); repeatable. Default:\n"
        "                         the pool each server proves. Either way an Address Change\n"
        "                         Message is followed only toward a member of its sender's pool\n"
        "  --acm-max-age SECONDS  refuse Address Change Messages issued longer ago (default 30;\n"
        "                         client and server clocks must agree that closely)\n";
  return text;
}

}  // namespace roam
