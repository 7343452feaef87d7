// tcp_blast: a dependency-free kernel TCP measurement tool (libc/POSIX only).
//
// Modes (see usage() below):
//   sink        accept N connections (concurrently, poll-based), read each to EOF,
//               print one JSON line per connection, close it.
//   send        connect, send N pattern bytes, shutdown(SHUT_WR), wait for the
//               peer's EOF, print one JSON line with the throughput.
//   echo-check  connect, send N pattern bytes while reading the echo back, verify
//               every byte, print one JSON line with the verdict.
//
// Exit codes: 0 success, 1 runtime failure (timeout, connection error, mismatch),
// 2 bad command-line arguments.
//
// The byte pattern is deterministic: byte i of a stream is kTable[i % kPeriod], with a
// prime period so that it never lines up with chunk or segment sizes.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kExitOk = 0;
constexpr int kExitFail = 1;
constexpr int kExitUsage = 2;

constexpr std::size_t kPeriod = 65521;  // largest prime below 2^16
constexpr std::size_t kDefaultChunk = 262144;
constexpr std::size_t kMaxChunk = 64u << 20;
constexpr double kConnectRetrySeconds = 10.0;

const char* g_prog = "tcp_blast";

void usage(FILE* out) {
  std::fprintf(out,
               "usage:\n"
               "  %s sink --listen IP:PORT [--count N] [--timeout SECONDS]\n"
               "  %s send --connect IP:PORT --bytes N [--chunk BYTES] [--timeout SECONDS]\n"
               "  %s echo-check --connect IP:PORT --bytes N [--chunk BYTES] [--timeout SECONDS]\n"
               "  %s --help\n"
               "\n"
               "Kernel TCP measurement helper (IPv4 IP:PORT or IPv6 [IP]:PORT, numeric only).\n"
               "\n"
               "  sink        Accept up to N connections (default 1) concurrently, read each until\n"
               "              EOF, print {\"conn\":i,\"bytes\":B,\"seconds\":S} per connection (i in\n"
               "              accept order from 0, S from accept to EOF), close it; exit after N.\n"
               "  send        Connect (retrying up to 10 s while refused/unreachable), send N bytes\n"
               "              of a deterministic pattern in writes of --chunk bytes (default 262144),\n"
               "              shutdown(SHUT_WR), wait for the peer's EOF and print\n"
               "              {\"bytes\":N,\"seconds\":S,\"gbps\":G}, S from connection established to\n"
               "              peer EOF.\n"
               "  echo-check  Connect like send, send N pattern bytes while reading the echo back,\n"
               "              verify every echoed byte, print\n"
               "              {\"bytes\":N,\"seconds\":S,\"gbps\":G,\"ok\":true|false} (on failure also\n"
               "              \"received\" and \"error\"); exit 1 on mismatch or short read. The write\n"
               "              side is shut down once all N bytes are sent.\n"
               "\n"
               "  --timeout SECONDS   give up (exit 1) after this long; default 120.\n"
               "\n"
               "Exit codes: 0 ok, 1 failure/timeout/mismatch, 2 bad arguments.\n",
               g_prog, g_prog, g_prog, g_prog);
}

[[noreturn]] void die_usage(const char* fmt, ...) {
  std::fprintf(stderr, "%s: ", g_prog);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, " (try '%s --help')\n", g_prog);
  std::exit(kExitUsage);
}

[[noreturn]] void die(const char* fmt, ...) {
  std::fprintf(stderr, "%s: ", g_prog);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fprintf(stderr, "\n");
  std::exit(kExitFail);
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double gbps(std::uint64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) * 8.0 / seconds / 1e9 : 0.0;
}

// ---------------------------------------------------------------- deadline

struct Deadline {
  Clock::time_point at;

  explicit Deadline(double seconds)
      : at(Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds))) {}

  bool expired() const { return Clock::now() >= at; }

  // Milliseconds left for poll(), rounded up, at least 0.
  int poll_ms() const {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at - Clock::now()).count() + 1;
    if (left < 0) return 0;
    if (left > 1000000) return 1000000;
    return static_cast<int>(left);
  }
};

// ---------------------------------------------------------------- arguments

struct Args {
  std::string mode;
  std::string listen;
  std::string connect;
  std::uint64_t bytes = 0;
  bool have_bytes = false;
  std::uint64_t count = 1;
  std::size_t chunk = kDefaultChunk;
  double timeout = 120.0;
};

std::uint64_t parse_u64(std::string_view opt, const char* s) {
  if (*s == '\0' || *s == '-' || *s == '+')
    die_usage("%.*s: expected a non-negative integer, got '%s'", static_cast<int>(opt.size()), opt.data(), s);
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0')
    die_usage("%.*s: expected a non-negative integer, got '%s'", static_cast<int>(opt.size()), opt.data(), s);
  return static_cast<std::uint64_t>(v);
}

double parse_seconds(std::string_view opt, const char* s) {
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (errno != 0 || end == s || *end != '\0' || !(v > 0) || v > 1e7)
    die_usage("%.*s: expected a positive number of seconds, got '%s'", static_cast<int>(opt.size()), opt.data(), s);
  return v;
}

Args parse_args(int argc, char** argv) {
  Args a;
  if (argc < 2) die_usage("missing mode");
  std::string_view mode = argv[1];
  if (mode == "--help" || mode == "-h" || mode == "help") {
    usage(stdout);
    std::exit(kExitOk);
  }
  if (mode != "sink" && mode != "send" && mode != "echo-check") die_usage("unknown mode '%s'", argv[1]);
  a.mode = std::string(mode);
  bool have_count = false, have_chunk = false;
  for (int i = 2; i < argc; ++i) {
    std::string_view opt = argv[i];
    if (opt == "--help" || opt == "-h") {
      usage(stdout);
      std::exit(kExitOk);
    }
    if (opt != "--listen" && opt != "--connect" && opt != "--bytes" && opt != "--count" && opt != "--chunk" &&
        opt != "--timeout")
      die_usage("unknown option '%s'", argv[i]);
    if (i + 1 >= argc) die_usage("%s needs a value", argv[i]);
    const char* val = argv[++i];
    if (opt == "--listen") {
      a.listen = val;
    } else if (opt == "--connect") {
      a.connect = val;
    } else if (opt == "--bytes") {
      a.bytes = parse_u64(opt, val);
      a.have_bytes = true;
    } else if (opt == "--count") {
      a.count = parse_u64(opt, val);
      have_count = true;
      if (a.count == 0 || a.count > 100000) die_usage("--count must be between 1 and 100000");
    } else if (opt == "--chunk") {
      std::uint64_t c = parse_u64(opt, val);
      if (c == 0 || c > kMaxChunk) die_usage("--chunk must be between 1 and %zu", kMaxChunk);
      a.chunk = static_cast<std::size_t>(c);
      have_chunk = true;
    } else {
      a.timeout = parse_seconds(opt, val);
    }
  }
  if (a.mode == "sink") {
    if (a.listen.empty()) die_usage("sink needs --listen IP:PORT");
    if (!a.connect.empty() || a.have_bytes || have_chunk) die_usage("sink takes only --listen, --count and --timeout");
  } else {
    if (a.connect.empty()) die_usage("%s needs --connect IP:PORT", a.mode.c_str());
    if (!a.have_bytes) die_usage("%s needs --bytes N", a.mode.c_str());
    if (!a.listen.empty() || have_count)
      die_usage("%s takes only --connect, --bytes, --chunk and --timeout", a.mode.c_str());
  }
  return a;
}

// Parses "1.2.3.4:80" or "[2001:db8::1]:80" (numeric only) into a sockaddr.
bool parse_endpoint(const std::string& s, sockaddr_storage& ss, socklen_t& len) {
  std::string host, port;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':') return false;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos || s.find(':') != colon) return false;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5) return false;
  for (char ch : port)
    if (ch < '0' || ch > '9') return false;
  unsigned long p = std::strtoul(port.c_str(), nullptr, 10);
  if (p > 65535) return false;
  std::memset(&ss, 0, sizeof ss);
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<std::uint16_t>(p));
    len = sizeof(sockaddr_in);
    return true;
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<std::uint16_t>(p));
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------- pattern

// A buffer of kPeriod + chunk bytes where buf[j] == pattern byte j (mod kPeriod), so
// the pattern for stream offsets [off, off + n) with n <= chunk is &buf[off % kPeriod].
std::vector<unsigned char> make_pattern(std::size_t chunk) {
  std::vector<unsigned char> table(kPeriod);
  std::uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& b : table) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<unsigned char>(x >> 56);
  }
  std::vector<unsigned char> buf(kPeriod + chunk);
  for (std::size_t j = 0; j < buf.size(); ++j) buf[j] = table[j % kPeriod];
  return buf;
}

// ---------------------------------------------------------------- sockets

void set_nonblocking(int fd) {
  int fl = fcntl(fd, F_GETFL, 0);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl(O_NONBLOCK): %s", std::strerror(errno));
}

// Non-blocking connect with retries while the server is not there yet (refused) or
// its route is not up yet (unreachable), for up to kConnectRetrySeconds and never past
// the overall deadline. Returns a connected non-blocking socket.
int connect_with_retry(const std::string& endpoint, const Deadline& deadline) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!parse_endpoint(endpoint, ss, len))
    die_usage("bad endpoint '%s' (want IP:PORT or [IPv6]:PORT)", endpoint.c_str());
  const Deadline retry_until(kConnectRetrySeconds);
  int last_err = 0;
  for (;;) {
    if (deadline.expired()) die("timeout while connecting to %s", endpoint.c_str());
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s", std::strerror(errno));
    set_nonblocking(fd);
    int err = 0;
    if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
      if (errno != EINPROGRESS) {
        err = errno;
      } else {
        pollfd pfd{fd, POLLOUT, 0};
        int r;
        do {
          r = poll(&pfd, 1, deadline.poll_ms());
        } while (r < 0 && errno == EINTR);
        if (r < 0) die("poll: %s", std::strerror(errno));
        if (r == 0) {
          close(fd);
          die("timeout while connecting to %s", endpoint.c_str());
        }
        socklen_t el = sizeof err;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0) err = errno;
      }
    }
    if (err == 0) return fd;
    close(fd);
    last_err = err;
    bool retryable = err == ECONNREFUSED || err == ENETUNREACH || err == EHOSTUNREACH;
    if (!retryable || retry_until.expired() || deadline.expired())
      die("connect to %s: %s", endpoint.c_str(), std::strerror(last_err));
    usleep(50 * 1000);
  }
}

int wait_fd(int fd, short events, const Deadline& deadline) {
  pollfd pfd{fd, events, 0};
  for (;;) {
    int r = poll(&pfd, 1, deadline.poll_ms());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("poll: %s", std::strerror(errno));
    if (r == 0 && deadline.expired()) return 0;
    if (r > 0) return pfd.revents;
  }
}

// ---------------------------------------------------------------- sink

struct SinkConn {
  int fd;
  std::uint64_t index;
  std::uint64_t bytes;
  Clock::time_point start;
};

int run_sink(const Args& a) {
  const Deadline deadline(a.timeout);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!parse_endpoint(a.listen, ss, len))
    die_usage("bad endpoint '%s' (want IP:PORT or [IPv6]:PORT)", a.listen.c_str());
  int lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket: %s", std::strerror(errno));
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&ss), len) < 0) die("bind %s: %s", a.listen.c_str(), std::strerror(errno));
  if (listen(lfd, 128) < 0) die("listen: %s", std::strerror(errno));
  set_nonblocking(lfd);

  std::vector<unsigned char> buf(kDefaultChunk);
  std::vector<SinkConn> conns;
  std::uint64_t accepted = 0;
  std::vector<pollfd> pfds;
  while (accepted < a.count || !conns.empty()) {
    pfds.clear();
    if (accepted < a.count) pfds.push_back({lfd, POLLIN, 0});
    for (const auto& c : conns) pfds.push_back({c.fd, POLLIN, 0});
    int r = poll(pfds.data(), pfds.size(), deadline.poll_ms());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("poll: %s", std::strerror(errno));
    if (r == 0 && deadline.expired())
      die("timeout: %llu of %llu connections accepted, %zu still open", static_cast<unsigned long long>(accepted),
          static_cast<unsigned long long>(a.count), conns.size());

    std::size_t base = 0;
    if (accepted < a.count) {
      base = 1;
      if (pfds[0].revents & POLLIN) {
        while (accepted < a.count) {
          int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED) break;
            die("accept: %s", std::strerror(errno));
          }
          conns.push_back({fd, accepted++, 0, Clock::now()});
        }
        if (accepted == a.count) {
          close(lfd);
          lfd = -1;
        }
      }
    }
    // Service the connections that were polled (newly accepted ones come next round).
    std::size_t polled = pfds.size() - base;
    std::vector<SinkConn> keep;
    keep.reserve(conns.size());
    for (std::size_t k = 0; k < conns.size(); ++k) {
      SinkConn& c = conns[k];
      bool done = false;
      if (k < polled && pfds[base + k].revents != 0) {
        for (;;) {
          ssize_t n = read(c.fd, buf.data(), buf.size());
          if (n > 0) {
            c.bytes += static_cast<std::uint64_t>(n);
            continue;
          }
          if (n == 0) {
            done = true;
          } else if (errno == EINTR) {
            continue;
          } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            die("read on connection %llu: %s", static_cast<unsigned long long>(c.index), std::strerror(errno));
          }
          break;
        }
      }
      if (done) {
        std::printf("{\"conn\":%llu,\"bytes\":%llu,\"seconds\":%.6f}\n", static_cast<unsigned long long>(c.index),
                    static_cast<unsigned long long>(c.bytes), seconds_since(c.start));
        std::fflush(stdout);
        close(c.fd);
      } else {
        keep.push_back(c);
      }
    }
    conns.swap(keep);
  }
  if (lfd >= 0) close(lfd);
  return kExitOk;
}

// ---------------------------------------------------------------- send

int run_send(const Args& a) {
  const Deadline deadline(a.timeout);
  const auto pattern = make_pattern(a.chunk);
  int fd = connect_with_retry(a.connect, deadline);
  const auto t0 = Clock::now();
  std::uint64_t sent = 0;
  while (sent < a.bytes) {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(a.chunk, a.bytes - sent));
    ssize_t w = send(fd, &pattern[sent % kPeriod], n, MSG_NOSIGNAL);
    if (w > 0) {
      sent += static_cast<std::uint64_t>(w);
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int ev = wait_fd(fd, POLLOUT, deadline);
      if (ev == 0)
        die("timeout after sending %llu of %llu bytes", static_cast<unsigned long long>(sent),
            static_cast<unsigned long long>(a.bytes));
      continue;
    }
    die("send after %llu bytes: %s", static_cast<unsigned long long>(sent),
        w < 0 ? std::strerror(errno) : "0 bytes written");
  }
  if (shutdown(fd, SHUT_WR) < 0) die("shutdown: %s", std::strerror(errno));
  // Wait for the peer to close its side (it does so after reading everything).
  unsigned char drain[4096];
  for (;;) {
    ssize_t r = read(fd, drain, sizeof drain);
    if (r == 0) break;
    if (r > 0) continue;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (wait_fd(fd, POLLIN, deadline) == 0) die("timeout waiting for the peer's EOF");
      continue;
    }
    die("read while waiting for EOF: %s", std::strerror(errno));
  }
  double s = seconds_since(t0);
  close(fd);
  std::printf("{\"bytes\":%llu,\"seconds\":%.6f,\"gbps\":%.3f}\n", static_cast<unsigned long long>(a.bytes), s,
              gbps(a.bytes, s));
  std::fflush(stdout);
  return kExitOk;
}

// ---------------------------------------------------------------- echo-check

int run_echo_check(const Args& a) {
  const Deadline deadline(a.timeout);
  const auto pattern = make_pattern(a.chunk);
  int fd = connect_with_retry(a.connect, deadline);
  const auto t0 = Clock::now();
  std::vector<unsigned char> buf(a.chunk);
  std::uint64_t sent = 0, received = 0;
  bool shut = false;
  std::string error;

  auto report = [&](bool ok) {
    double s = seconds_since(t0);
    if (ok) {
      std::printf("{\"bytes\":%llu,\"seconds\":%.6f,\"gbps\":%.3f,\"ok\":true}\n",
                  static_cast<unsigned long long>(a.bytes), s, gbps(a.bytes, s));
    } else {
      std::printf("{\"bytes\":%llu,\"seconds\":%.6f,\"gbps\":%.3f,\"ok\":false,\"received\":%llu,\"error\":\"%s\"}\n",
                  static_cast<unsigned long long>(a.bytes), s, gbps(received, s),
                  static_cast<unsigned long long>(received), error.c_str());
      std::fprintf(stderr, "%s: echo-check failed: %s\n", g_prog, error.c_str());
    }
    std::fflush(stdout);
    close(fd);
    return ok ? kExitOk : kExitFail;
  };

  while (received < a.bytes) {
    if (sent == a.bytes && !shut) {
      // Everything is sent: tell the echo server the stream is over.
      if (shutdown(fd, SHUT_WR) < 0) {
        error = std::string("shutdown: ") + std::strerror(errno);
        return report(false);
      }
      shut = true;
    }
    pollfd pfd{fd, static_cast<short>(POLLIN | (sent < a.bytes ? POLLOUT : 0)), 0};
    int r = poll(&pfd, 1, deadline.poll_ms());
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) die("poll: %s", std::strerror(errno));
    if (r == 0 && deadline.expired()) {
      error = "timeout";
      return report(false);
    }
    if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
      for (;;) {
        ssize_t n = read(fd, buf.data(), buf.size());
        if (n > 0) {
          auto un = static_cast<std::uint64_t>(n);
          if (received + un > a.bytes) {
            error = "peer echoed more bytes than were sent";
            received += un;
            return report(false);
          }
          if (std::memcmp(buf.data(), &pattern[received % kPeriod], static_cast<std::size_t>(n)) != 0) {
            std::size_t i = 0;
            while (buf[i] == pattern[(received + i) % kPeriod]) ++i;
            error = "mismatch at byte offset " + std::to_string(received + i);
            received += un;
            return report(false);
          }
          received += un;
          continue;
        }
        if (n == 0) {
          if (received < a.bytes) {
            error = "short read: peer closed early";
            return report(false);
          }
          break;
        }
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) break;
        error = std::string("read: ") + std::strerror(errno);
        return report(false);
      }
    }
    if (sent < a.bytes && (pfd.revents & POLLOUT)) {
      for (;;) {
        std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(a.chunk, a.bytes - sent));
        if (n == 0) break;
        ssize_t w = send(fd, &pattern[sent % kPeriod], n, MSG_NOSIGNAL);
        if (w > 0) {
          sent += static_cast<std::uint64_t>(w);
          continue;
        }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        error = std::string("send: ") + (w < 0 ? std::strerror(errno) : "0 bytes written");
        return report(false);
      }
    }
  }
  return report(true);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 0 && argv[0] != nullptr) {
    const char* slash = std::strrchr(argv[0], '/');
    g_prog = slash != nullptr ? slash + 1 : argv[0];
  }
  std::signal(SIGPIPE, SIG_IGN);
  Args a = parse_args(argc, argv);
  if (a.mode == "sink") return run_sink(a);
  if (a.mode == "send") return run_send(a);
  return run_echo_check(a);
}
