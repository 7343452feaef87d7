// acm_flood: a flood of forged Address Change Messages toward a roam-client's UDP carrier
// link, for tools/bench/acm_bench.py. Each datagram is what the link carries: one IPv4
// packet, a TCP segment spoofed from a server's control-channel endpoint (--src:7001) to
// the client's channel port (--dst:--dport), PSH|ACK, random sequence and acknowledgment
// numbers, carrying one channel frame of an ACM's size (a u16 length, then random
// counter, ciphertext and tag): what an off-path attacker who knows the ports can send
// (it cannot know the sequence numbers). Spoofed sources must lie in 198.18.0.0/15.
//
// 4096 distinct segments are built once, with correct IP and TCP checksums (so the
// client's stack checks them as it would real ones), then sent round and round with
// sendmmsg, 64 per call, on one UDP socket connect()ed to --link: building and per-call
// costs stay off the measurement, which shares the machine's cores with the flooder.
// Stops after --count datagrams or --seconds, whichever comes first; SIGTERM or SIGINT
// stops it early. --rate PPS paces it, batch by batch (0: as fast as it goes). Prints one
// JSON line: sent (datagrams attempted, each send error counted as one attempt, as the
// Python tool this replaces did), accepted (datagrams the kernel took), seconds, pps
// (sent per second). No privilege needed.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "stack/wire/checksum.hpp"
#include "stack/wire/tcp_header.hpp"
#include "tools/bench/flood_common.hpp"

namespace {

constexpr size_t distinct_segments = 4096;
constexpr size_t batch = 64;  // divides distinct_segments: a batch never wraps
constexpr uint16_t channel_port = 7001;
constexpr size_t ip_tcp_headers = 40;
// Jumbo-frame sized at most: 4096 of them stay under 40 MB.
constexpr long frame_bytes_max = 9000;

constexpr const char* usage_line =
    "usage: acm_flood --link HOST:PORT --src IP --dst IP --dport PORT --count N --seconds S "
    "[--frame-bytes 83] [--rate PPS]\n";

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr, "acm_flood: %s\n%s", why.c_str(), usage_line);
  std::exit(2);
}

struct Options {
  std::string link;
  std::string src;
  std::string dst;
  long dport = 0;
  long long count = -1;
  double seconds = -1;
  long frame_bytes = 83;
  double rate = 0;
};


Options parse_options(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::printf("acm_flood: forged ACM segments to a roam-client's UDP link (see tools/bench/README.md)\n%s",
                  usage_line);
      std::exit(0);
    }
    if (i + 1 >= argc) usage_error("missing value for " + arg);
    const std::string value = argv[++i];
    if (arg == "--link")
      o.link = value;
    else if (arg == "--src")
      o.src = value;
    else if (arg == "--dst")
      o.dst = value;
    else if (arg == "--dport")
      o.dport = static_cast<long>(roam::bench::integer_option(arg, value, usage_error));
    else if (arg == "--count")
      o.count = roam::bench::integer_option(arg, value, usage_error);
    else if (arg == "--seconds")
      o.seconds = roam::bench::number_option(arg, value, usage_error);
    else if (arg == "--frame-bytes")
      o.frame_bytes = static_cast<long>(roam::bench::integer_option(arg, value, usage_error));
    else if (arg == "--rate")
      o.rate = roam::bench::number_option(arg, value, usage_error);
    else
      usage_error("unknown argument '" + arg + "'");
  }
  if (o.link.empty() || o.src.empty() || o.dst.empty()) usage_error("--link, --src and --dst are required");
  if (o.dport <= 0 || o.dport > 65535) usage_error("--dport must be a port, 1-65535");
  if (o.count <= 0 || o.seconds <= 0) usage_error("--count and --seconds are both required and positive");
  if (o.frame_bytes < 2 || o.frame_bytes > frame_bytes_max)
    usage_error("--frame-bytes must be 2-" + std::to_string(frame_bytes_max));
  if (o.rate < 0) usage_error("--rate must be 0 (as fast as it goes) or positive");
  return o;
}

std::array<uint8_t, 4> parse_ipv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) usage_error("bad IPv4 address '" + text + "'");
  std::array<uint8_t, 4> bytes{};
  std::memcpy(bytes.data(), &a.s_addr, 4);  // s_addr is in network order already
  return bytes;
}

uint32_t host_order(const std::array<uint8_t, 4>& a) {
  return static_cast<uint32_t>(a[0]) << 24 | static_cast<uint32_t>(a[1]) << 16 | static_cast<uint32_t>(a[2]) << 8 | a[3];
}

// A UDP socket connect()ed to HOST:PORT (an IPv4 host, a literal or a name), so sendmmsg
// needs no address per message; exits with a clear line on failure.
int open_link(const std::string& link) {
  const size_t colon = link.rfind(':');
  if (colon == std::string::npos || colon == 0) usage_error("--link must be HOST:PORT");
  const std::string host = link.substr(0, colon);
  const std::string port = link.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0 || found == nullptr)
    usage_error("bad --link '" + link + "': " + gai_strerror(rc));
  const int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0 || connect(fd, found->ai_addr, found->ai_addrlen) != 0) {
    std::perror("acm_flood: link socket");
    std::exit(1);
  }
  freeaddrinfo(found);
  return fd;
}

// One forged segment into `out` (exactly its size). The Python tool this replaces sent
// DF clear and a random IP identification; build_ipv4_tcp sets DF, so it is cleared here
// and the IP header summed again, to keep the same bytes on the wire.
void build_forged_segment(std::span<uint8_t> out, std::mt19937_64& random, const std::array<uint8_t, 4>& src,
                          const std::array<uint8_t, 4>& dst, uint16_t dport) {
  std::vector<uint8_t> payload(out.size() - ip_tcp_headers);
  const size_t body = payload.size() - 2;
  payload[0] = static_cast<uint8_t>(body >> 8);
  payload[1] = static_cast<uint8_t>(body);
  for (size_t i = 2; i < payload.size(); ++i) payload[i] = static_cast<uint8_t>(random());
  roam::wire::Ipv4TcpFields fields;
  fields.src = src;
  fields.dst = dst;
  fields.src_port = channel_port;
  fields.dst_port = dport;
  fields.seq = static_cast<uint32_t>(random());
  fields.ack = static_cast<uint32_t>(random());
  fields.flags = roam::wire::TcpSegmentView::PSH | roam::wire::TcpSegmentView::ACK;
  fields.window = 65535;
  fields.ttl = 64;
  fields.identification = static_cast<uint16_t>(random());
  const size_t length = roam::wire::build_ipv4_tcp(out, fields, payload);
  if (length != out.size()) {
    std::fprintf(stderr, "acm_flood: could not build a %zu-byte segment\n", out.size());
    std::exit(1);
  }
  out[6] = 0;  // flags and fragment offset: DF clear
  out[10] = out[11] = 0;
  const uint16_t ip_checksum = roam::wire::internet_checksum(out.first(20));
  out[10] = static_cast<uint8_t>(ip_checksum >> 8);
  out[11] = static_cast<uint8_t>(ip_checksum);
}

struct Counts {
  long long sent = 0;      // datagrams attempted
  long long accepted = 0;  // datagrams the kernel took
};

// Sends messages[0, n) and adds them to `counts`: each one attempted to `sent`, each one
// the kernel took to `accepted`. A refused or full send (ECONNREFUSED from an earlier
// ICMP, EAGAIN, ENOBUFS) drops the one datagram it was for and goes on with the next, as
// the Python tool ignored a failed sendto. Returns false on any other error (the flood
// ends); a stop signal ends the batch early, counting only what was attempted.
bool send_batch(int fd, mmsghdr* messages, size_t n, Counts& counts) {
  size_t next = 0;
  while (next < n) {
    const int done = sendmmsg(fd, messages + next, static_cast<unsigned>(n - next), 0);
    if (done > 0) {
      counts.accepted += done;
      next += static_cast<size_t>(done);
    } else if (done < 0 && errno == EINTR) {
      if (roam::bench::stop_requested()) break;
    } else if (done < 0 && errno != ECONNREFUSED && errno != EAGAIN && errno != ENOBUFS) {
      std::perror("acm_flood: sendmmsg");
      counts.sent += static_cast<long long>(next);
      return false;
    } else {
      ++next;
    }
  }
  counts.sent += static_cast<long long>(next);
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  const auto src = parse_ipv4(options.src);
  const auto dst = parse_ipv4(options.dst);
  if (!roam::bench::in_benchmark_range(host_order(src))) usage_error("--src must lie inside 198.18.0.0/15");
  const int fd = open_link(options.link);

  // All segments in one buffer, built before the clock starts.
  const size_t packet_size = ip_tcp_headers + static_cast<size_t>(options.frame_bytes);
  std::vector<uint8_t> packets(distinct_segments * packet_size);
  std::vector<iovec> iov(distinct_segments);
  std::vector<mmsghdr> messages(distinct_segments);
  std::mt19937_64 random(std::random_device{}());
  for (size_t i = 0; i < distinct_segments; ++i) {
    const std::span<uint8_t> packet(packets.data() + i * packet_size, packet_size);
    build_forged_segment(packet, random, src, dst, static_cast<uint16_t>(options.dport));
    iov[i] = {packet.data(), packet.size()};
    messages[i].msg_hdr.msg_iov = &iov[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }

  roam::bench::install_stop_handlers();
  const roam::bench::FloodBounds bounds(options.count, options.seconds, options.rate);
  Counts counts;
  size_t cursor = 0;  // next of the distinct segments to send
  while (bounds.keep_going(counts.sent)) {
    const size_t n = bounds.next_batch(counts.sent, batch);
    if (!send_batch(fd, &messages[cursor], n, counts)) break;
    cursor = (cursor + n) % distinct_segments;
    bounds.pace(counts.sent);
  }
  close(fd);
  std::printf("{%s, \"accepted\": %lld}\n", bounds.result_fields(counts.sent).c_str(), counts.accepted);
  return 0;
}
