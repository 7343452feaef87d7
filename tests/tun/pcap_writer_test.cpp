// Tests for tun/pcap_writer: header encoders byte by byte, a real file, and tcpdump reading it.
#include "tun/pcap_writer.hpp"

#include <doctest/doctest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "stack/wire/tcp_header.hpp"

namespace {

using Bytes = std::vector<uint8_t>;

uint32_t get_le32(const Bytes& b, size_t at) {
  return uint32_t{b[at]} | (uint32_t{b[at + 1]} << 8) | (uint32_t{b[at + 2]} << 16) | (uint32_t{b[at + 3]} << 24);
}

// A fresh path under the temp directory, removed when the test ends.
struct TempPath {
  std::filesystem::path path;
  TempPath() {
    static int counter = 0;
    path = std::filesystem::temp_directory_path() /
           ("roam_pcap_test_" + std::to_string(getpid()) + "_" + std::to_string(++counter) + ".pcap");
  }
  ~TempPath() {
    std::error_code ignored;
    std::filesystem::remove(path, ignored);
  }
};

Bytes read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

bool on_path(const std::string& tool) {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  std::string dirs = path;
  size_t start = 0;
  while (start <= dirs.size()) {
    const size_t end = std::min(dirs.find(':', start), dirs.size());
    const std::string candidate = dirs.substr(start, end - start) + "/" + tool;
    if (end > start && access(candidate.c_str(), X_OK) == 0) return true;
    start = end + 1;
  }
  return false;
}

// Runs `command`, returning its standard output.
std::string run(const std::string& command) {
  std::string output;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    pclose(pipe);
  }
  return output;
}

Bytes tcp_packet(uint16_t dst_port, size_t payload_size) {
  Bytes out(2000);
  const Bytes payload(payload_size, 0x61);
  const roam::wire::Ipv4TcpFields fields{.src = {10, 9, 0, 1},
                                         .dst = {10, 9, 0, 2},
                                         .src_port = 1234,
                                         .dst_port = dst_port,
                                         .seq = 1,
                                         .flags = roam::wire::TcpSegmentView::SYN};
  out.resize(roam::wire::build_ipv4_tcp(out, fields, payload));
  return out;
}

}  // namespace

TEST_CASE("pcap global header encodes magic, version 2.4, snaplen and LINKTYPE_RAW") {
  constexpr auto h = roam::encode_pcap_global_header();
  const Bytes expected = {0xd4, 0xc3, 0xb2, 0xa1, 0x02, 0x00, 0x04, 0x00, 0,   0, 0, 0,
                          0,    0,    0,    0,    0x00, 0x00, 0x04, 0x00, 101, 0, 0, 0};
  CHECK(Bytes(h.begin(), h.end()) == expected);
  static_assert(roam::encode_pcap_global_header(65535, 1)[16] == 0xff);
}

TEST_CASE("pcap record header encodes timestamp and lengths little-endian") {
  const auto h = roam::encode_pcap_record_header(0x01020304, 999999, 60, 0x00012345);
  const Bytes expected = {0x04, 0x03, 0x02, 0x01, 0x3f, 0x42, 0x0f, 0x00, 60, 0, 0, 0, 0x45, 0x23, 0x01, 0x00};
  CHECK(Bytes(h.begin(), h.end()) == expected);
}

namespace {
uint32_t realtime_seconds() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return static_cast<uint32_t>(now.tv_sec);
}
}  // namespace

TEST_CASE("PcapWriter writes three packets that read back and that tcpdump counts") {
  TempPath file;
  const std::vector<Bytes> packets = {tcp_packet(80, 0), tcp_packet(443, 3), tcp_packet(22, 100)};
  // The writer stamps with CLOCK_REALTIME; time() may read the coarse clock, a tick behind
  // it, and then `after` would be a second early just past a second's boundary.
  const auto before = realtime_seconds();
  {
    auto writer = roam::PcapWriter::open(file.path.string());
    REQUIRE(writer.has_value());
    for (const auto& p : packets) (*writer)->write(p);
    (*writer)->flush();
    CHECK((*writer)->packets_written() == 3);
    CHECK((*writer)->error_count() == 0);
    // flush() makes the data visible before the writer closes.
    CHECK(read_file(file.path).size() == 24 + 3 * 16 + 40 + 43 + 140);
  }
  const auto after = realtime_seconds();

  const Bytes bytes = read_file(file.path);
  REQUIRE(bytes.size() == 24 + 3 * 16 + 40 + 43 + 140);
  const auto global = roam::encode_pcap_global_header();
  CHECK(Bytes(bytes.begin(), bytes.begin() + 24) == Bytes(global.begin(), global.end()));

  size_t at = 24;
  for (const auto& p : packets) {
    const uint32_t sec = get_le32(bytes, at);
    CHECK(sec >= before);
    CHECK(sec <= after);
    CHECK(get_le32(bytes, at + 4) < 1000000);
    CHECK(get_le32(bytes, at + 8) == p.size());
    CHECK(get_le32(bytes, at + 12) == p.size());
    at += 16;
    CHECK(Bytes(bytes.begin() + static_cast<std::ptrdiff_t>(at),
                bytes.begin() + static_cast<std::ptrdiff_t>(at + p.size())) == p);
    at += p.size();
  }

  const std::string quoted = "'" + file.path.string() + "'";
  if (on_path("tcpdump")) {
    const std::string out = run("tcpdump -r " + quoted + " -nn 2>/dev/null");
    CAPTURE(out);
    size_t lines = 0;
    for (char c : out) lines += c == '\n' ? 1 : 0;
    CHECK(lines == 3);
    CHECK(out.find("10.9.0.1.1234 > 10.9.0.2.443") != std::string::npos);
  } else if (on_path("tshark")) {
    const std::string out = run("tshark -r " + quoted + " -n 2>/dev/null");
    CAPTURE(out);
    size_t lines = 0;
    for (char c : out) lines += c == '\n' ? 1 : 0;
    CHECK(lines == 3);
  } else {
    MESSAGE("neither tcpdump nor tshark on PATH: skipping the external reader check");
  }
}

TEST_CASE("PcapWriter truncates packets above the snaplen but keeps the original length") {
  TempPath file;
  const Bytes big(roam::pcap_snaplen + 10, 0x45);
  {
    auto writer = roam::PcapWriter::open(file.path.string());
    REQUIRE(writer.has_value());
    (*writer)->write(big);
    (*writer)->write({});
  }
  const Bytes bytes = read_file(file.path);
  REQUIRE(bytes.size() == 24 + 16 + roam::pcap_snaplen + 16);
  CHECK(get_le32(bytes, 24 + 8) == roam::pcap_snaplen);
  CHECK(get_le32(bytes, 24 + 12) == big.size());
  const size_t second = 24 + 16 + roam::pcap_snaplen;
  CHECK(get_le32(bytes, second + 8) == 0);
  CHECK(get_le32(bytes, second + 12) == 0);
}

TEST_CASE("PcapWriter::open reports an unwritable path") {
  const auto writer = roam::PcapWriter::open("/nonexistent-dir/roam/x.pcap");
  REQUIRE_FALSE(writer.has_value());
  CHECK(writer.error().find("/nonexistent-dir/roam/x.pcap") != std::string::npos);
}

TEST_CASE("PcapWriter::open reports a file that refuses writes") {
  // /dev/full accepts open but fails every write with ENOSPC; open flushes the global
  // header, so the failure shows up there.
  if (access("/dev/full", W_OK) != 0) {
    MESSAGE("/dev/full not available: skipping");
    return;
  }
  const auto writer = roam::PcapWriter::open("/dev/full");
  REQUIRE_FALSE(writer.has_value());
  CHECK(writer.error().find("No space") != std::string::npos);
}

TEST_CASE("PcapWriter counts write errors after open instead of throwing") {
  // A file size limit makes writes past 64 KiB fail with EFBIG (SIGXFSZ ignored), once the
  // 1 MiB stdio buffer spills. Both are restored before checking.
  TempPath file;
  rlimit saved{};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  const auto saved_handler = std::signal(SIGXFSZ, SIG_IGN);
  rlimit limited = saved;
  limited.rlim_cur = 64 * 1024;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &limited) == 0);

  uint64_t written = 0;
  uint64_t errors = 0;
  {
    auto writer = roam::PcapWriter::open(file.path.string());
    if (writer.has_value()) {
      const Bytes packet(1500, 0x45);
      for (int i = 0; i < 1000; ++i) (*writer)->write(packet);  // 1.5 MB
      (*writer)->flush();
      written = (*writer)->packets_written();
      errors = (*writer)->error_count();
    }
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, saved_handler);

  CHECK(errors > 0);
  CHECK(written + errors >= 1000);
  CHECK(std::filesystem::file_size(file.path) <= 64 * 1024);
}
