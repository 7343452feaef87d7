// roamctl: the operator's command-line tool. Talks to a roam-server's control port.
//
//   roamctl migrate --from HOST:PORT --to HOST:PORT [--count N]
//   roamctl status --server HOST:PORT
//
// Plain blocking sockets: one request, one reply line, exit status 0 on "ok".
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "crypto/identity_key.hpp"
#include "stack/migrate/control_frame.hpp"
#include "base/socket_address.hpp"

namespace {

const char* usage = R"(Usage: roamctl COMMAND [OPTIONS]

Commands:
  migrate --from HOST:PORT --to HOST:PORT [--count N]
        move the live sessions of the server whose control port is --from to the server
        whose control port is --to (at most N sessions; default all). The connections
        stay open; their clients are told where the server went. Prints one line:
        "ok moved M of N sessions to ADDRESS in T ms", or "error ...".
  status --server HOST:PORT
        print the server's migration counters as one JSON line
  genkey [--out FILE]
        make a new X25519 identity key: print its private key (base64), or write it to
        FILE with mode 0600 (never overwriting). `roamctl genkey | roamctl pubkey`.
  pubkey [--key FILE]
        read a private key (base64) from stdin, or from FILE (refused when group or
        others can read it), and print its public key (base64)

Options:
  --timeout SECONDS   give up waiting for the reply (default 60)
  -h, --help          show this help

Exit status: 0 on success, 1 when the server reports an error or cannot be reached,
2 on bad arguments. The control port is unauthenticated in this version: keep it on
loopback or a management network.
)";

int fail_usage(const std::string& message) {
  std::fprintf(stderr, "roamctl: %s\n", message.c_str());
  return 2;
}

// Sends one frame and waits for the reply frame; returns its text, or "error ..." when
// the server cannot be reached or answers nothing.
std::string request(const std::string& server, roam::migrate::FrameType type, const std::string& text,
                    int timeout_seconds) {
  sockaddr_storage address{};
  socklen_t length = 0;
  if (!roam::parse_socket_address(server, address, length)) return "error bad address '" + server + "'";
  int fd = socket(address.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("error socket: ") + std::strerror(errno);
  timeval timeout{timeout_seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0) {
    std::string error = std::string("error cannot connect to ") + server + ": " + std::strerror(errno);
    close(fd);
    return error;
  }
  std::vector<uint8_t> out;
  roam::migrate::append_frame(type, text, out);
  for (size_t sent = 0; sent < out.size();) {
    ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      close(fd);
      return std::string("error send: ") + std::strerror(errno);
    }
    sent += static_cast<size_t>(n);
  }
  roam::migrate::FrameReader reader;
  std::vector<uint8_t> buffer(64 * 1024);
  while (true) {
    auto frame = reader.next();
    if (!frame) {
      close(fd);
      return std::string("error bad reply: ") + roam::migrate::frame_error_name(frame.error());
    }
    if (frame.value()) {
      close(fd);
      if (frame.value()->type != roam::migrate::FrameType::reply) return "error unexpected reply frame";
      return std::string(frame.value()->payload.begin(), frame.value()->payload.end());
    }
    ssize_t n = recv(fd, buffer.data(), buffer.size(), 0);
    if (n <= 0) {
      std::string error =
          n == 0 ? "error connection closed without a reply" : std::string("error no reply: ") + std::strerror(errno);
      close(fd);
      return error;
    }
    reader.feed({buffer.data(), static_cast<size_t>(n)});
  }
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
  if (argc < 2) return fail_usage("no command: migrate, status, genkey or pubkey (see --help)");
  std::string command = argv[1];
  if (command == "-h" || command == "--help") {
    std::fputs(usage, stdout);
    return 0;
  }
  std::string from, to, server, count, out_file, key_file;
  int timeout_seconds = 60;
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(usage, stdout);
      return 0;
    }
    if (i + 1 >= argc) return fail_usage("option " + arg + " needs a value");
    std::string value = argv[++i];
    if (arg == "--from")
      from = value;
    else if (arg == "--to")
      to = value;
    else if (arg == "--server")
      server = value;
    else if (arg == "--count")
      count = value;
    else if (arg == "--out" && command == "genkey")
      out_file = value;
    else if (arg == "--key" && command == "pubkey")
      key_file = value;
    else if (arg == "--timeout")
      timeout_seconds = std::atoi(value.c_str());
    else
      return fail_usage("unknown option '" + arg + "' (see --help)");
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
  if (command == "genkey" || command == "pubkey") {
    if (!from.empty() || !to.empty() || !server.empty() || !count.empty())
      return fail_usage(command + " takes no --from, --to, --server or --count");
    return command == "genkey" ? generate_key(out_file) : print_public_key(key_file);
  }
  std::string reply;
  if (command == "migrate") {
    if (from.empty() || to.empty()) return fail_usage("migrate needs --from HOST:PORT and --to HOST:PORT");
    if (!count.empty() && count.find_first_not_of("0123456789") != std::string::npos)
      return fail_usage("bad --count '" + count + "'");
    std::string text = "to=" + to + (count.empty() ? "" : " count=" + count);
    reply = request(from, roam::migrate::FrameType::migrate_request, text, timeout_seconds);
  } else if (command == "status") {
    if (server.empty()) return fail_usage("status needs --server HOST:PORT");
    reply = request(server, roam::migrate::FrameType::status_request, "", timeout_seconds);
  } else {
    return fail_usage("unknown command '" + command + "' (see --help)");
  }
  std::printf("%s\n", reply.c_str());
  return reply.rfind("error", 0) == 0 ? 1 : 0;
}
