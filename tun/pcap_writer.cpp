#include "tun/pcap_writer.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace roam {

Result<std::unique_ptr<PcapWriter>, std::string> PcapWriter::open(const std::string& path) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr) {
    return unexpected("cannot open pcap file " + path + ": " + std::strerror(errno));
  }
  // A large buffer turns one write per packet into one syscall per megabyte. setvbuf must
  // come before any other operation on the stream.
  auto buffer = std::make_unique<char[]>(buffer_size);
  if (std::setvbuf(file, buffer.get(), _IOFBF, buffer_size) != 0) {
    std::fclose(file);
    return unexpected("cannot set buffer for pcap file " + path);
  }
  const auto header = encode_pcap_global_header();
  if (std::fwrite(header.data(), 1, header.size(), file) != header.size() || std::fflush(file) != 0) {
    const int saved = errno;
    std::fclose(file);
    return unexpected("cannot write pcap file " + path + ": " + std::strerror(saved));
  }
  return std::unique_ptr<PcapWriter>(new PcapWriter(file, std::move(buffer)));
}

PcapWriter::PcapWriter(std::FILE* file, std::unique_ptr<char[]> buffer) : buffer_(std::move(buffer)), file_(file) {}

PcapWriter::~PcapWriter() {
  // fclose flushes through buffer_, which member destruction frees only after this body.
  if (std::fclose(file_) != 0) ++error_count_;
}

void PcapWriter::write(std::span<const uint8_t> packet) {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  const auto captured = static_cast<uint32_t>(std::min<size_t>(packet.size(), pcap_snaplen));
  // Classic pcap's original length is 32 bits; no IP packet comes near that.
  const auto original = static_cast<uint32_t>(std::min<size_t>(packet.size(), UINT32_MAX));
  const auto header = encode_pcap_record_header(static_cast<uint32_t>(now.tv_sec),
                                                static_cast<uint32_t>(now.tv_nsec / 1000), captured, original);
  if (std::fwrite(header.data(), 1, header.size(), file_) != header.size() ||
      (captured > 0 && std::fwrite(packet.data(), 1, captured, file_) != captured)) {
    ++error_count_;
    return;
  }
  ++packets_written_;
}

void PcapWriter::flush() {
  if (std::fflush(file_) != 0) ++error_count_;
}

}  // namespace roam
