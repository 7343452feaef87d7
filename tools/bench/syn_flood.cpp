// syn_flood: a bounded spoofed SYN flood for the lab (issue 13), run inside a network
// namespace a test created. IPv4 SYNs with MSS 1460 from random addresses of --sources
// (which must lie inside 198.18.0.0/15) and random ports to --dst:--port, through a raw
// socket (IP_HDRINCL), in batches with sendmmsg. Stops after --count packets or
// --duration seconds, whichever comes first, and prints one JSON line: sent, seconds, pps.
// --rate PPS paces it (0: as fast as it goes). Needs CAP_NET_RAW.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "stack/wire/tcp_header.hpp"

namespace {

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr,
               "syn_flood: %s\nusage: syn_flood --dst IP --port PORT --count N --duration SECONDS "
               "[--sources 198.19.0.0/16] [--rate PPS]\n",
               why.c_str());
  std::exit(2);
}

uint32_t parse_ipv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) usage_error("bad IPv4 address '" + text + "'");
  return ntohl(a.s_addr);
}

}  // namespace

int main(int argc, char** argv) {
  std::string dst_text;
  std::string sources = "198.19.0.0/16";
  long port = 0;
  long long count = -1;
  double duration = -1;
  double rate = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) usage_error("missing value for " + arg);
    std::string value = argv[++i];
    if (arg == "--dst") dst_text = value;
    else if (arg == "--port") port = std::strtol(value.c_str(), nullptr, 10);
    else if (arg == "--count") count = std::strtoll(value.c_str(), nullptr, 10);
    else if (arg == "--duration") duration = std::strtod(value.c_str(), nullptr);
    else if (arg == "--sources") sources = value;
    else if (arg == "--rate") rate = std::strtod(value.c_str(), nullptr);
    else usage_error("unknown argument '" + arg + "'");
  }
  if (dst_text.empty() || port <= 0 || port > 65535) usage_error("--dst and --port are required");
  if (count <= 0 || duration <= 0) usage_error("--count and --duration are both required and positive");
  const size_t slash = sources.find('/');
  if (slash == std::string::npos) usage_error("--sources must be a prefix A.B.C.D/LEN");
  const uint32_t source_base = parse_ipv4(sources.substr(0, slash));
  const int source_len = std::atoi(sources.substr(slash + 1).c_str());
  // Spoofed sources only from the benchmarking range 198.18.0.0/15 (RFC 2544).
  if (source_len < 15 || source_len > 32 || (source_base & 0xfffe0000u) != 0xc6120000u)
    usage_error("--sources must lie inside 198.18.0.0/15");
  const uint32_t host_mask = source_len == 32 ? 0 : (0xffffffffu >> source_len);
  const uint32_t dst = parse_ipv4(dst_text);

  int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);  // IPPROTO_RAW implies IP_HDRINCL
  if (fd < 0) {
    std::perror("syn_flood: raw socket");
    return 1;
  }
  constexpr size_t batch = 64;
  constexpr std::array<uint8_t, 4> mss_option{2, 4, 0x05, 0xb4};
  std::vector<std::array<uint8_t, 64>> packets(batch);
  std::vector<iovec> iov(batch);
  std::vector<mmsghdr> messages(batch);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(dst);
  std::mt19937_64 random(std::random_device{}());

  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(duration);
  long long sent = 0;
  while (sent < count && std::chrono::steady_clock::now() < deadline) {
    const size_t n = static_cast<size_t>(std::min<long long>(batch, count - sent));
    for (size_t i = 0; i < n; ++i) {
      const uint64_t r = random();
      const uint32_t source = (source_base & ~host_mask) | (static_cast<uint32_t>(r) & host_mask);
      roam::wire::Ipv4TcpFields fields;
      for (int b = 0; b < 4; ++b) {
        fields.src[static_cast<size_t>(b)] = static_cast<uint8_t>(source >> (24 - 8 * b));
        fields.dst[static_cast<size_t>(b)] = static_cast<uint8_t>(dst >> (24 - 8 * b));
      }
      fields.src_port = static_cast<uint16_t>(1024 + (r >> 32) % 64000);
      fields.dst_port = static_cast<uint16_t>(port);
      fields.seq = static_cast<uint32_t>(r >> 16);
      fields.flags = roam::wire::TcpSegmentView::SYN;
      fields.window = 64240;
      fields.options = mss_option;
      const size_t length = roam::wire::build_ipv4_tcp(packets[i], fields, {});
      iov[i] = {packets[i].data(), length};
      messages[i] = {};
      messages[i].msg_hdr.msg_name = &to;
      messages[i].msg_hdr.msg_namelen = sizeof to;
      messages[i].msg_hdr.msg_iov = &iov[i];
      messages[i].msg_hdr.msg_iovlen = 1;
    }
    int done = sendmmsg(fd, messages.data(), static_cast<unsigned>(n), 0);
    if (done < 0) {
      if (errno == ENOBUFS || errno == EAGAIN) continue;
      std::perror("syn_flood: sendmmsg");
      break;
    }
    sent += done;
    if (rate > 0) {
      const auto due = start + std::chrono::duration<double>(static_cast<double>(sent) / rate);
      std::this_thread::sleep_until(due);
    }
  }
  close(fd);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("{\"sent\": %lld, \"seconds\": %.3f, \"pps\": %.0f}\n", sent, seconds,
              seconds > 0 ? static_cast<double>(sent) / seconds : 0.0);
  return 0;
}
