// tun/tun_syn_check: the kernel runs the program (BPF_PROG_TEST_RUN on crafted packets,
// no device needed): first SYN copies dropped and recorded, retransmissions passed,
// everything else passed untouched, generations forgotten as SynRetxTable forgets them.
// Needs root (CAP_BPF), as CI runs; elsewhere the cases say so and check nothing.
#include "tun/tun_syn_check.hpp"

#include <doctest/doctest.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "stack/wire/tcp_header.hpp"

namespace roam {
namespace {

namespace wire = roam::wire;

std::unique_ptr<TunSynCheck> make_check() {
  std::string why;
  auto check = TunSynCheck::create({}, why);
  if (!check) {
    if (geteuid() != 0) {
      MESSAGE("not root: the kernel refuses the program (" << why << "); nothing checked");
      return nullptr;
    }
    FAIL("TunSynCheck::create as root: " << why);
  }
  return check;
}

// What the program returns for this IP packet (the bytes kept; 0: dropped), as a TUN
// device's filter would see it: the test run strips the Ethernet header put in front.
uint32_t run(const TunSynCheck& check, const std::vector<uint8_t>& ip_packet) {
  std::vector<uint8_t> frame(14, 0);
  const bool v6 = !ip_packet.empty() && (ip_packet[0] >> 4) == 6;
  frame[12] = v6 ? 0x86 : 0x08;
  frame[13] = v6 ? 0xdd : 0x00;
  frame.insert(frame.end(), ip_packet.begin(), ip_packet.end());
  bpf_attr attr{};
  attr.test.prog_fd = static_cast<uint32_t>(check.program_fd());
  attr.test.data_in = reinterpret_cast<uint64_t>(frame.data());
  attr.test.data_size_in = static_cast<uint32_t>(frame.size());
  attr.test.repeat = 1;
  const long rc = syscall(__NR_bpf, BPF_PROG_TEST_RUN, &attr, sizeof attr);
  REQUIRE_MESSAGE(rc == 0, "BPF_PROG_TEST_RUN: " << std::strerror(errno));
  return attr.test.retval;
}

std::vector<uint8_t> segment(uint32_t isn, uint8_t flags, uint16_t src_port = 40000) {
  static constexpr uint8_t mss[] = {2, 4, 0x05, 0xb4};
  wire::Ipv4TcpFields f;
  f.src = {198, 19, 1, 2};
  f.dst = {198, 18, 12, 2};
  f.src_port = src_port;
  f.dst_port = 7000;
  f.seq = isn;
  f.flags = flags;
  f.window = 64240;
  f.options = mss;
  std::vector<uint8_t> out(80);
  out.resize(wire::build_ipv4_tcp(out, f, {}));
  REQUIRE(!out.empty());
  return out;
}

constexpr uint8_t syn = wire::TcpSegmentView::SYN;
constexpr uint8_t ack = wire::TcpSegmentView::ACK;

}  // namespace

TEST_CASE("tun syn check: inactive, every packet passes and nothing is recorded") {
  auto check = make_check();
  if (!check) return;
  const auto first = segment(1000, syn);
  CHECK(run(*check, first) == first.size());
  CHECK(run(*check, first) == first.size());
  CHECK(check->counters().judged == 0);
  check->set_active(true);
  CHECK(run(*check, first) == 0);  // never recorded while inactive: a first copy now
}

TEST_CASE("tun syn check: a SYN's first copy is dropped, its retransmissions pass") {
  auto check = make_check();
  if (!check) return;
  check->set_active(true);
  check->advance(0);
  const auto a = segment(1000, syn);
  CHECK(TunSynCheck::judges(a));
  CHECK(run(*check, a) == 0);
  CHECK(run(*check, a) == a.size());
  CHECK(run(*check, a) == a.size());
  // Another ISN or another port is another SYN: a first copy.
  CHECK(run(*check, segment(1001, syn)) == 0);
  CHECK(run(*check, segment(1000, syn, 40001)) == 0);
  const auto c = check->counters();
  CHECK(c.judged == 5);
  CHECK(c.first_dropped == 3);
  CHECK(c.retx_passed == 2);
}

TEST_CASE("tun syn check: what it does not judge passes untouched") {
  auto check = make_check();
  if (!check) return;
  check->set_active(true);
  std::vector<std::vector<uint8_t>> others = {
      segment(1, syn | ack), segment(1, ack), segment(1, syn | wire::TcpSegmentView::RST),
      segment(1, syn | wire::TcpSegmentView::FIN)};
  auto fragment = segment(2, syn);
  fragment[6] = 0x20;  // MF
  others.push_back(fragment);
  auto later_fragment = segment(3, syn);
  later_fragment[6] = 0x00;
  later_fragment[7] = 0x08;  // offset 64 bytes
  others.push_back(later_fragment);
  auto with_ip_options = segment(4, syn);
  with_ip_options[0] = 0x46;
  others.push_back(with_ip_options);
  auto udp = segment(5, syn);
  udp[9] = 17;
  others.push_back(udp);
  auto truncated = segment(6, syn);
  truncated.resize(30);
  others.push_back(truncated);
  wire::Ipv6TcpFields f6;
  f6.src[0] = 0x20;
  f6.src[1] = 0x01;
  f6.src[2] = 0x0d;
  f6.src[3] = 0xb8;
  f6.dst = f6.src;
  f6.dst[15] = 1;
  f6.src_port = 40000;
  f6.dst_port = 7000;
  f6.flags = syn;
  std::vector<uint8_t> v6(100);
  v6.resize(wire::build_ipv6_tcp(v6, f6, {}));
  others.push_back(v6);
  for (const auto& packet : others) {
    CHECK_FALSE(TunSynCheck::judges(packet));
    CHECK(run(*check, packet) == packet.size());
  }
  CHECK(check->counters().judged == 0);
}

TEST_CASE("tun syn check: a record lives one to two generations") {
  auto check = make_check();
  if (!check) return;
  check->set_active(true);
  check->advance(0);
  const auto a = segment(7000, syn);
  CHECK(run(*check, a) == 0);  // recorded in generation 0
  check->advance(2999);
  check->advance(3000);        // rotation: the record is in the older generation now
  CHECK(run(*check, a) == a.size());  // found there, and recorded again in the current one
  const auto b = segment(7001, syn);
  CHECK(run(*check, b) == 0);
  check->advance(6000);
  check->advance(9000);        // two rotations: both of b's generations cleared
  CHECK(run(*check, b) == 0);
  check->advance(100000);      // a long gap: everything forgotten
  CHECK(run(*check, b) == 0);
  CHECK(run(*check, b) == b.size());
}

TEST_CASE("tun syn check: the program is refused nothing on this kernel's verifier with any table size") {
  for (uint32_t words_log2 : {6u, 12u, 19u, 24u}) {
    std::string why;
    auto check = TunSynCheck::create({words_log2, 3000}, why);
    if (!check && geteuid() != 0) return;
    INFO("words_log2 " << words_log2 << ": " << why);
    REQUIRE(check);
    check->set_active(true);
    const auto a = segment(words_log2, syn);
    CHECK(run(*check, a) == 0);
    CHECK(run(*check, a) == a.size());
  }
  std::string why;
  CHECK_FALSE(TunSynCheck::create({5, 3000}, why));
  CHECK(why.find("words_log2") != std::string::npos);
  CHECK_FALSE(TunSynCheck::create({19, 0}, why));
}

}  // namespace roam
