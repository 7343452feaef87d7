// syn_flood: a bounded spoofed SYN flood for the lab (issue 13), run inside a network
// namespace a test created. IPv4 SYNs with MSS 1460 from random addresses of --sources
// (which must lie inside 198.18.0.0/15), random ports and ISNs to --dst:--port. Stops
// after --count packets or --duration seconds, whichever comes first, and prints one JSON
// line: sent, seconds, pps, path; SIGTERM or SIGINT stops it early, with the same line
// (a test stops the flood when its clients are done). --rate PPS paces it (0: as fast as
// it goes). Needs CAP_NET_RAW.
//
// Two paths, both in batches of 256 with sendmmsg:
//   raw (default): a raw IP socket (IP_HDRINCL); the kernel routes every packet.
//   --ifname IF: an AF_PACKET socket on IF with PACKET_QDISC_BYPASS: Ethernet frames
//     straight to the driver, no routing, netfilter or qdisc on our side (in the lab 0.95
//     to 1.6 times the raw path's rate, run for run on a shared machine: most of a
//     flood's cost is the receiving namespace's, and building the packets is ~4 % of the
//     sender's; 100-250 kpps either way when the machine is quiet). The next hop's MAC
//     is IF's neighbor entry for --dst, else its only complete one (/proc/net/arp; a UDP
//     datagram to --dst:9 makes the kernel resolve it first), or --dst-mac.
// A batch the kernel did not take whole is sent again from where it stopped (no packet
// built twice, none skipped).
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>


#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "stack/wire/tcp_header.hpp"
#include "tools/bench/flood_common.hpp"

namespace {

[[noreturn]] void usage_error(const std::string& why) {
  std::fprintf(stderr,
               "syn_flood: %s\nusage: syn_flood --dst IP --port PORT --count N --duration SECONDS "
               "[--sources 198.19.0.0/16] [--rate PPS] [--ifname IF [--dst-mac MAC]]\n",
               why.c_str());
  std::exit(2);
}


uint32_t parse_ipv4(const std::string& text) {
  in_addr a{};
  if (inet_pton(AF_INET, text.c_str(), &a) != 1) usage_error("bad IPv4 address '" + text + "'");
  return ntohl(a.s_addr);
}

using Mac = std::array<uint8_t, 6>;

std::optional<Mac> parse_mac(const std::string& text) {
  Mac mac{};
  unsigned v[6];
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
    return std::nullopt;
  for (size_t i = 0; i < 6; ++i) {
    if (v[i] > 0xff) return std::nullopt;
    mac[i] = static_cast<uint8_t>(v[i]);
  }
  return mac;
}

// /proc/net/arp: "IP HWtype Flags HWaddress Mask Device"; flags 0x2 = complete.
std::optional<Mac> neighbor_mac(const std::string& ifname, const std::string& dst) {
  std::ifstream arp("/proc/net/arp");
  std::string line;
  std::getline(arp, line);  // header
  std::optional<Mac> only;
  size_t complete = 0;
  while (std::getline(arp, line)) {
    std::istringstream fields(line);
    std::string ip, type, flags, hw, mask, device;
    if (!(fields >> ip >> type >> flags >> hw >> mask >> device) || device != ifname) continue;
    if ((std::strtoul(flags.c_str(), nullptr, 16) & 0x2) == 0) continue;
    auto mac = parse_mac(hw);
    if (!mac) continue;
    if (ip == dst) return mac;
    only = mac;
    ++complete;
  }
  if (complete == 1) return only;
  return std::nullopt;
}

// Makes the kernel resolve the next hop toward dst (one UDP datagram to the discard port).
void resolve_next_hop(uint32_t dst) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(dst);
  to.sin_port = htons(9);
  (void)sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  close(fd);
}

struct Target {
  int fd = -1;
  bool packet = false;  // AF_PACKET: frames carry an Ethernet header
  sockaddr_in ip{};
  sockaddr_ll link{};
  Mac src_mac{};
  Mac dst_mac{};
};

Target open_raw(uint32_t dst) {
  Target t;
  t.fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);  // IPPROTO_RAW implies IP_HDRINCL
  if (t.fd < 0) {
    std::perror("syn_flood: raw socket");
    std::exit(1);
  }
  t.ip.sin_family = AF_INET;
  t.ip.sin_addr.s_addr = htonl(dst);
  return t;
}

Target open_packet(const std::string& ifname, const std::string& dst_mac_text, uint32_t dst,
                   const std::string& dst_text) {
  Target t;
  t.packet = true;
  t.fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: we send only, receive nothing
  if (t.fd < 0) {
    std::perror("syn_flood: packet socket");
    std::exit(1);
  }
  int one = 1;
  if (setsockopt(t.fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) != 0)
    std::perror("syn_flood: PACKET_QDISC_BYPASS (going on through the qdisc)");
  ifreq request{};
  if (ifname.size() >= sizeof request.ifr_name) usage_error("--ifname too long");
  std::memcpy(request.ifr_name, ifname.c_str(), ifname.size());
  if (ioctl(t.fd, SIOCGIFHWADDR, &request) != 0) {
    std::perror(("syn_flood: " + ifname).c_str());
    std::exit(1);
  }
  std::memcpy(t.src_mac.data(), request.ifr_hwaddr.sa_data, 6);
  if (!dst_mac_text.empty()) {
    auto mac = parse_mac(dst_mac_text);
    if (!mac) usage_error("bad --dst-mac '" + dst_mac_text + "'");
    t.dst_mac = *mac;
  } else {
    auto mac = neighbor_mac(ifname, dst_text);
    for (int i = 0; !mac && i < 20; ++i) {
      resolve_next_hop(dst);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      mac = neighbor_mac(ifname, dst_text);
    }
    if (!mac) usage_error("no neighbor entry on " + ifname + ": give --dst-mac");
    t.dst_mac = *mac;
  }
  t.link.sll_family = AF_PACKET;
  t.link.sll_protocol = htons(ETH_P_IP);
  t.link.sll_ifindex = static_cast<int>(if_nametoindex(ifname.c_str()));
  if (t.link.sll_ifindex == 0) usage_error("no interface '" + ifname + "'");
  t.link.sll_halen = 6;
  std::memcpy(t.link.sll_addr, t.dst_mac.data(), 6);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  std::string dst_text;
  std::string sources = "198.19.0.0/16";
  std::string ifname;
  std::string dst_mac;
  long long port = 0;
  long long count = -1;
  double duration = -1;
  double rate = 0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (i + 1 >= argc) usage_error("missing value for " + arg);
    std::string value = argv[++i];
    if (arg == "--dst") dst_text = value;
    else if (arg == "--port") port = roam::bench::integer_option(arg, value, usage_error);
    else if (arg == "--count") count = roam::bench::integer_option(arg, value, usage_error);
    else if (arg == "--duration") duration = roam::bench::number_option(arg, value, usage_error);
    else if (arg == "--sources") sources = value;
    else if (arg == "--rate") rate = roam::bench::number_option(arg, value, usage_error);
    else if (arg == "--ifname") ifname = value;
    else if (arg == "--dst-mac") dst_mac = value;
    else usage_error("unknown argument '" + arg + "'");
  }
  if (dst_text.empty() || port <= 0 || port > 65535) usage_error("--dst and --port are required");
  if (count <= 0 || duration <= 0) usage_error("--count and --duration are both required and positive");
  if (rate < 0) usage_error("--rate must be 0 (as fast as it goes) or positive");
  const size_t slash = sources.find('/');
  if (slash == std::string::npos) usage_error("--sources must be a prefix A.B.C.D/LEN");
  const uint32_t source_base = parse_ipv4(sources.substr(0, slash));
  const auto prefix_length = roam::bench::parse_whole_integer(sources.substr(slash + 1));
  if (!prefix_length || !roam::bench::prefix_in_benchmark_range(source_base, static_cast<int>(*prefix_length)))
    usage_error("--sources must lie inside 198.18.0.0/15");
  const int source_len = static_cast<int>(*prefix_length);
  const uint32_t host_mask = source_len == 32 ? 0 : (0xffffffffu >> source_len);
  const uint32_t dst = parse_ipv4(dst_text);

  Target target = ifname.empty() ? open_raw(dst) : open_packet(ifname, dst_mac, dst, dst_text);
  const size_t offset = target.packet ? sizeof(ether_header) : 0;
  constexpr size_t batch = 256;
  constexpr std::array<uint8_t, 4> mss_option{2, 4, 0x05, 0xb4};
  std::vector<std::array<uint8_t, 80>> packets(batch);
  std::vector<iovec> iov(batch);
  std::vector<mmsghdr> messages(batch);
  for (size_t i = 0; i < batch; ++i) {
    if (target.packet) {
      ether_header eth{};
      std::memcpy(eth.ether_dhost, target.dst_mac.data(), 6);
      std::memcpy(eth.ether_shost, target.src_mac.data(), 6);
      eth.ether_type = htons(ETHERTYPE_IP);
      std::memcpy(packets[i].data(), &eth, sizeof eth);
    }
    messages[i].msg_hdr.msg_name = target.packet ? static_cast<void*>(&target.link) : static_cast<void*>(&target.ip);
    messages[i].msg_hdr.msg_namelen = target.packet ? sizeof target.link : sizeof target.ip;
    messages[i].msg_hdr.msg_iov = &iov[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
  std::mt19937_64 random(std::random_device{}());
  roam::bench::install_stop_handlers();
  const roam::bench::FloodBounds bounds(count, duration, rate);
  long long sent = 0;
  long long errors = 0;
  size_t ready = 0;  // packets of the batch built and not yet sent
  while (bounds.keep_going(sent)) {
    const size_t n = bounds.next_batch(sent, batch);
    for (size_t i = ready; i < n; ++i) {
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
      const size_t length =
          roam::wire::build_ipv4_tcp(std::span<uint8_t>(packets[i]).subspan(offset), fields, {});
      iov[i] = {packets[i].data(), offset + length};
    }
    ready = n;
    int done = sendmmsg(target.fd, messages.data(), static_cast<unsigned>(n), 0);
    if (done <= 0) {
      if (done < 0 && errno != ENOBUFS && errno != EAGAIN) {
        std::perror("syn_flood: sendmmsg");
        break;
      }
      ++errors;
      continue;  // the same (already built) batch again
    }
    sent += done;
    // The unsent tail moves to the front, built; the rest is rebuilt next round.
    const size_t left = n - static_cast<size_t>(done);
    for (size_t i = 0; i < left; ++i) {
      std::swap(packets[i], packets[static_cast<size_t>(done) + i]);
      iov[i] = {packets[i].data(), iov[static_cast<size_t>(done) + i].iov_len};
    }
    ready = left;
    bounds.pace(sent);
  }
  close(target.fd);
  std::printf("{%s, \"path\": \"%s\", \"send_errors\": %lld}\n", bounds.result_fields(sent).c_str(),
              target.packet ? "packet" : "raw", errors);
  return 0;
}
