// roamctl: the operator's command-line tool. Talks to a roam-server's control port over
// the Noise XX stream of docs/PROTOCOL.md ("Control port") with the operator's key, and
// makes the keys and pool certificates a deployment needs.
//
//   roamctl migrate --from HOST:PORT --to HOST:PORT [--count N] [--key FILE]
//   roamctl inform --server HOST:PORT [--to HOST:PORT] [--key FILE]
//   roamctl status --server HOST:PORT [--key FILE]
//   roamctl show --server HOST:PORT [--json] [--key FILE]
//   roamctl genkey | pubkey | pool genkey | pool pubkey | pool admit
//
// Plain blocking sockets: one request, one reply line, exit status 0 on "ok".
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "crypto/identity_key.hpp"
#include "crypto/noise_stream.hpp"
#include "crypto/pool_certificate.hpp"
#include "stack/migrate/control_frame.hpp"
#include "base/socket_address.hpp"

namespace {

const char* usage = R"(Usage: roamctl COMMAND [OPTIONS]

Commands:
  migrate --from HOST:PORT --to HOST:PORT [--count N] [--key FILE]
        move the live sessions of the server whose control port is --from to the server
        whose control port is --to (at most N sessions; default all). The connections
        stay open; their clients are told where the server went. Prints one line:
        "ok moved M of N sessions to ADDRESS in T ms", or "error ...".
  inform --server HOST:PORT [--to HOST:PORT] [--key FILE]
        seed 004's Informer, now: the server (its control port) ratifies its verified
        clients at the next proxy (--to, a pool member's control port; default the
        server's --next-proxy), which whitelists them, tells each client that new
        connections go there, and moves its sessions there. Prints one line: "ok
        informed N client address(es) (K notified) of TARGET; moved M of S sessions",
        or "error ..."
  status --server HOST:PORT [--key FILE]
        print the server's migration counters as one JSON line
  show --server HOST:PORT [--json] [--key FILE]
        show the server as `wg show` does: its identity key, addresses and pool; its
        control channels (client key, address, age, registered connections); its
        sessions (id, kind, each leg's 4-tuple, bytes each way, age, the move that
        brought it and its changeover, movable or why not); its nonzero counters.
        --json: the same (every counter) as one JSON object
  genkey [--out FILE]
        make a new X25519 identity key: print its private key (base64), or write it to
        FILE with mode 0600 (never overwriting). `roamctl genkey | roamctl pubkey`.
  pubkey [--key FILE]
        read a private key (base64) from stdin, or from FILE (refused when group or
        others can read it), and print its public key (base64)
  pool genkey --out FILE
        make a pool signing key (Ed25519, mode 0600, never overwriting) and print the
        pool's public key. Keep it offline: it admits servers to the pool.
  pool pubkey --key FILE
        print the pool's public key (what clients may pin with --trust-pool)
  pool admit --pool-key FILE --member PUBLIC_KEY [--days N] [--out FILE]
        certify a server's identity key (`roamctl pubkey --key server.key`) as a member
        of the pool, valid N days (default: no expiry); print the certificate, or write
        it to FILE for the server's --pool-cert

Options:
  --key FILE          the operator's identity key (`roamctl genkey --out FILE`), listed
                      in the server's --operators. Default: $ROAMCTL_KEY, else a fresh
                      key (answered only by servers with --status-open, status only)
  --server-key KEY    refuse the server unless its static key is KEY (base64)
  --timeout SECONDS   give up waiting for the reply (default 60)
  -h, --help          show this help

Exit status: 0 on success, 1 when the server reports an error or cannot be reached,
2 on bad arguments.
)";

int fail_usage(const std::string& message) {
  std::fprintf(stderr, "roamctl: %s\n", message.c_str());
  return 2;
}

// A connected blocking socket, closed when it goes.
struct Socket {
  int fd = -1;
  ~Socket() {
    if (fd >= 0) close(fd);
  }
};

bool send_all(int fd, const std::vector<uint8_t>& bytes) {
  for (size_t sent = 0; sent < bytes.size();) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Runs the Noise handshake as initiator, sends one frame inside it and waits for the
// reply frame; returns its text, or "error ..." when the server cannot be reached, is not
// who --server-key says, or answers nothing.
std::string request(const std::string& server, roam::migrate::FrameType type, const std::string& text,
                    int timeout_seconds, const roam::crypto::IdentityKey& key,
                    const std::optional<roam::crypto::PublicKey>& server_key) {
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!roam::parse_socket_address(server, address, length)) return "error bad address '" + server + "'";
  Socket socket_fd;
  socket_fd.fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int fd = socket_fd.fd;
  if (fd < 0) return std::string("error socket: ") + std::strerror(errno);
  timeval timeout{timeout_seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0)
    return std::string("error cannot connect to ") + server + ": " + std::strerror(errno);

  roam::crypto::NoiseStream noise(roam::crypto::NoiseRole::initiator, key, {});
  if (!send_all(fd, noise.start())) return std::string("error send: ") + std::strerror(errno);
  std::vector<uint8_t> frame;
  roam::migrate::append_frame(type, text, frame);
  bool request_sent = false;
  roam::migrate::FrameReader reader;
  std::vector<uint8_t> buffer(64 * 1024);
  while (true) {
    if (noise.established() && !request_sent) {
      if (server_key && noise.remote_static() != *server_key)
        return "error the server's key is " + roam::crypto::to_base64(noise.remote_static()) +
               ", not the --server-key given";
      std::vector<uint8_t> sealed;
      if (!noise.seal(frame, sealed) || !send_all(fd, sealed)) return std::string("error send: ") + std::strerror(errno);
      request_sent = true;
    }
    auto next = reader.next();
    if (!next) return std::string("error bad reply: ") + roam::migrate::frame_error_name(next.error());
    if (next.value()) {
      if (next.value()->type != roam::migrate::FrameType::reply) return "error unexpected reply frame";
      return std::string(next.value()->payload.begin(), next.value()->payload.end());
    }
    ssize_t n = recv(fd, buffer.data(), buffer.size(), 0);
    if (n <= 0) {
      if (n == 0 && !noise.established()) return "error the server closed the connection during the handshake";
      return n == 0 ? "error connection closed without a reply"
                    : std::string("error no reply: ") + std::strerror(errno);
    }
    std::vector<uint8_t> to_send, plaintext;
    auto fed = noise.feed({buffer.data(), static_cast<size_t>(n)}, to_send, plaintext);
    if (!to_send.empty() && !send_all(fd, to_send)) return std::string("error send: ") + std::strerror(errno);
    if (!fed) return std::string("error ") + roam::crypto::noise_stream_error_name(fed.error());
    reader.feed(plaintext);
  }
}

// The operator key: --key FILE, else $ROAMCTL_KEY, else a fresh one (anonymous).
roam::Result<roam::crypto::IdentityKey, std::string> operator_key(std::string key_file) {
  if (key_file.empty()) {
    const char* from_env = std::getenv("ROAMCTL_KEY");
    if (from_env != nullptr) key_file = from_env;
  }
  if (key_file.empty()) return roam::crypto::IdentityKey::generate();
  auto key = roam::crypto::IdentityKey::load(key_file);
  if (!key) return roam::unexpected(key_file + ": " + roam::crypto::key_error_name(key.error()));
  return std::move(key.value());
}

int pool_genkey(const std::string& out_file) {
  if (out_file.empty()) {
    std::fprintf(stderr, "roamctl: pool genkey needs --out FILE (the pool key never goes to a terminal)\n");
    return 2;
  }
  auto key = roam::crypto::PoolSigningKey::generate();
  auto saved = key.save(out_file);
  if (!saved) {
    std::fprintf(stderr, "roamctl: %s: %s\n", out_file.c_str(), roam::crypto::key_error_name(saved.error()));
    return 1;
  }
  std::printf("%s\n", roam::crypto::to_base64(key.public_key()).c_str());
  return 0;
}

int pool_pubkey(const std::string& key_file) {
  auto key = roam::crypto::PoolSigningKey::load(key_file);
  if (!key) {
    std::fprintf(stderr, "roamctl: %s: %s\n", key_file.c_str(), roam::crypto::key_error_name(key.error()));
    return 1;
  }
  std::printf("%s\n", roam::crypto::to_base64(key->public_key()).c_str());
  return 0;
}

int pool_admit(const std::string& pool_key_file, const std::string& member, const std::string& days,
               const std::string& out_file) {
  auto member_key = roam::crypto::public_key_from_base64(member);
  if (!member_key) {
    std::fprintf(stderr, "roamctl: bad --member '%s': expected a base64 X25519 public key\n", member.c_str());
    return 2;
  }
  uint64_t not_after = 0;
  if (!days.empty()) {
    if (days.find_first_not_of("0123456789") != std::string::npos || days.size() > 6 || std::stoul(days) == 0) {
      std::fprintf(stderr, "roamctl: bad --days '%s'\n", days.c_str());
      return 2;
    }
    not_after = static_cast<uint64_t>(std::time(nullptr)) + std::stoul(days) * 86400;
  }
  auto key = roam::crypto::PoolSigningKey::load(pool_key_file);
  if (!key) {
    std::fprintf(stderr, "roamctl: %s: %s\n", pool_key_file.c_str(), roam::crypto::key_error_name(key.error()));
    return 1;
  }
  std::string certificate = roam::crypto::certificate_to_base64(key->admit(*member_key, not_after)) + "\n";
  if (out_file.empty()) {
    std::fputs(certificate.c_str(), stdout);
    return 0;
  }
  FILE* file = std::fopen(out_file.c_str(), "wx");
  if (file == nullptr || std::fputs(certificate.c_str(), file) < 0 || std::fclose(file) != 0) {
    std::fprintf(stderr, "roamctl: cannot write %s (it must not exist yet)\n", out_file.c_str());
    return 1;
  }
  return 0;
}

int generate_key(const std::string& out_file) {
  auto key = roam::crypto::IdentityKey::generate();
  if (out_file.empty()) {
    std::printf("%s\n", key.secret_base64().c_str());
    return 0;
  }
  auto saved = key.save(out_file);
  if (!saved) {
    std::fprintf(stderr, "roamctl: %s: %s\n", out_file.c_str(), roam::crypto::key_error_name(saved.error()));
    return 1;
  }
  std::printf("%s\n", roam::crypto::to_base64(key.public_key()).c_str());  // the shareable half
  return 0;
}

int print_public_key(const std::string& key_file) {
  auto key = [&]() -> roam::Result<roam::crypto::IdentityKey, roam::crypto::KeyError> {
    if (!key_file.empty()) return roam::crypto::IdentityKey::load(key_file);
    std::string line;
    char buffer[256];
    size_t n = std::fread(buffer, 1, sizeof buffer, stdin);
    line.assign(buffer, n);
    sodium_memzero(buffer, sizeof buffer);
    auto parsed = roam::crypto::IdentityKey::from_base64(line);
    sodium_memzero(line.data(), line.size());
    return parsed;
  }();
  if (!key) {
    std::fprintf(stderr, "roamctl: %s%s%s\n", key_file.empty() ? "stdin" : key_file.c_str(), ": ",
                 roam::crypto::key_error_name(key.error()));
    return 1;
  }
  std::printf("%s\n", roam::crypto::to_base64(key->public_key()).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return fail_usage("no command: migrate, inform, status, show, genkey, pubkey or pool (see --help)");
  std::string command = argv[1];
  if (command == "-h" || command == "--help") {
    std::fputs(usage, stdout);
    return 0;
  }
  int first_option = 2;
  if (command == "pool") {
    if (argc < 3 || argv[2][0] == '-') return fail_usage("pool needs genkey, pubkey or admit (see --help)");
    command = std::string("pool ") + argv[2];
    first_option = 3;
  }
  std::string from, to, server, count, out_file, key_file, server_key_text, pool_key_file, member, days;
  int timeout_seconds = 60;
  bool json = false;
  for (int i = first_option; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (arg == "--json" && command == "show") {
      json = true;
      continue;
    }
    if (i + 1 >= argc) return fail_usage("option " + arg + " needs a value");
    std::string value = argv[++i];
    bool talks = command == "migrate" || command == "inform" || command == "status" || command == "show";
    if (arg == "--from" && command == "migrate")
      from = value;
    else if (arg == "--to" && (command == "migrate" || command == "inform"))
      to = value;
    else if (arg == "--server" && (command == "status" || command == "show" || command == "inform"))
      server = value;
    else if (arg == "--count" && command == "migrate")
      count = value;
    else if (arg == "--out" && (command == "genkey" || command == "pool genkey" || command == "pool admit"))
      out_file = value;
    else if (arg == "--key" && (talks || command == "pubkey" || command == "pool pubkey"))
      key_file = value;
    else if (arg == "--server-key" && talks)
      server_key_text = value;
    else if (arg == "--pool-key" && command == "pool admit")
      pool_key_file = value;
    else if (arg == "--member" && command == "pool admit")
      member = value;
    else if (arg == "--days" && command == "pool admit")
      days = value;
    else if (arg == "--timeout" && talks)
      timeout_seconds = std::atoi(value.c_str());
    else
      return fail_usage("unknown option '" + arg + "' for " + command + " (see --help)");
  }
  if (timeout_seconds <= 0) return fail_usage("--timeout must be a positive number of seconds");
  auto check_address = [](const std::string& option, const std::string& value) {
    sockaddr_storage address{};
    socklen_t length = 0;
    return value.empty() || roam::parse_socket_address(value, address, length)
               ? std::string()
               : "bad " + option + " '" + value + "': expected IP:PORT";
  };
  for (const auto& [option, value] :
       {std::pair<std::string, std::string>{"--from", from}, {"--to", to}, {"--server", server}}) {
    if (auto error = check_address(option, value); !error.empty()) return fail_usage(error);
  }
  if (command == "genkey") return generate_key(out_file);
  if (command == "pubkey") return print_public_key(key_file);
  if (command == "pool genkey") return pool_genkey(out_file);
  if (command == "pool pubkey") {
    if (key_file.empty()) return fail_usage("pool pubkey needs --key FILE");
    return pool_pubkey(key_file);
  }
  if (command == "pool admit") {
    if (pool_key_file.empty() || member.empty()) return fail_usage("pool admit needs --pool-key FILE --member KEY");
    return pool_admit(pool_key_file, member, days, out_file);
  }
  if (command != "migrate" && command != "inform" && command != "status" && command != "show")
    return fail_usage("unknown command '" + command + "' (see --help)");
  std::optional<roam::crypto::PublicKey> server_key;
  if (!server_key_text.empty()) {
    server_key = roam::crypto::public_key_from_base64(server_key_text);
    if (!server_key) return fail_usage("bad --server-key: expected a base64 X25519 public key");
  }
  auto key = operator_key(key_file);
  if (!key) {
    std::fprintf(stderr, "roamctl: %s\n", key.error().c_str());
    return 2;
  }
  std::string reply;
  if (command == "migrate") {
    if (from.empty() || to.empty()) return fail_usage("migrate needs --from HOST:PORT and --to HOST:PORT");
    if (!count.empty() && count.find_first_not_of("0123456789") != std::string::npos)
      return fail_usage("bad --count '" + count + "'");
    std::string text = "to=" + to + (count.empty() ? "" : " count=" + count);
    reply = request(from, roam::migrate::FrameType::migrate_request, text, timeout_seconds, *key, server_key);
  } else if (command == "inform") {
    if (server.empty()) return fail_usage("inform needs --server HOST:PORT");
    reply = request(server, roam::migrate::FrameType::inform_request, to.empty() ? "" : "to=" + to, timeout_seconds,
                    *key, server_key);
  } else if (command == "show") {
    if (server.empty()) return fail_usage("show needs --server HOST:PORT");
    // The server renders both forms from one collection (stack/migrate/server_show).
    reply = request(server, roam::migrate::FrameType::status_request, json ? "show" : "show text", timeout_seconds,
                    *key, server_key);
    if (reply.rfind("error", 0) != 0 && !json && reply.rfind("server: ", 0) != 0) {
      std::fprintf(stderr, "roamctl: the server does not know `show` (an older version?): %s\n", reply.c_str());
      return 1;
    }
    if (reply.rfind("error", 0) != 0 && json && reply.find("\"server\":{") == std::string::npos) {
      std::fprintf(stderr, "roamctl: the server does not know `show` (an older version?)\n");
      return 1;
    }
  } else {
    if (server.empty()) return fail_usage("status needs --server HOST:PORT");
    reply = request(server, roam::migrate::FrameType::status_request, "", timeout_seconds, *key, server_key);
  }
  if (!reply.empty() && reply.back() == '\n') reply.pop_back();
  std::printf("%s\n", reply.c_str());
  return reply.rfind("error", 0) == 0 ? 1 : 0;
}
