// Classic pcap file writer for raw IP packets (LINKTYPE_RAW), used to trace a link.
// One PcapWriter is owned by whoever taps the link and used from that link's loop only
// (not thread-safe). The header encoders below are pure and unit-testable.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>

#include "base/result.hpp"

namespace roam {

// https://www.tcpdump.org/manpages/pcap-savefile.5.html and linktypes.html.
inline constexpr uint32_t pcap_magic_microseconds = 0xa1b2c3d4;
inline constexpr uint16_t pcap_version_major = 2;
inline constexpr uint16_t pcap_version_minor = 4;
inline constexpr uint32_t pcap_snaplen = 262144;
inline constexpr uint32_t pcap_linktype_raw = 101;  // packet starts with the IPv4/IPv6 header
inline constexpr size_t pcap_global_header_size = 24;
inline constexpr size_t pcap_record_header_size = 16;

namespace pcap_detail {
constexpr void store_le16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
constexpr void store_le32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}
}  // namespace pcap_detail

// The 24-byte file header. Written little-endian whatever the host: readers detect the
// byte order from the magic number.
constexpr std::array<uint8_t, pcap_global_header_size> encode_pcap_global_header(
    uint32_t snaplen = pcap_snaplen, uint32_t linktype = pcap_linktype_raw) {
  std::array<uint8_t, pcap_global_header_size> h{};
  pcap_detail::store_le32(&h[0], pcap_magic_microseconds);
  pcap_detail::store_le16(&h[4], pcap_version_major);
  pcap_detail::store_le16(&h[6], pcap_version_minor);
  pcap_detail::store_le32(&h[8], 0);   // thiszone: timestamps are UTC
  pcap_detail::store_le32(&h[12], 0);  // sigfigs
  pcap_detail::store_le32(&h[16], snaplen);
  pcap_detail::store_le32(&h[20], linktype);
  return h;
}

// The 16-byte per-packet header: timestamp (seconds, microseconds), bytes stored in the
// file, and the packet's original length.
constexpr std::array<uint8_t, pcap_record_header_size> encode_pcap_record_header(uint32_t ts_sec, uint32_t ts_usec,
                                                                                 uint32_t captured_length,
                                                                                 uint32_t original_length) {
  std::array<uint8_t, pcap_record_header_size> h{};
  pcap_detail::store_le32(&h[0], ts_sec);
  pcap_detail::store_le32(&h[4], ts_usec);
  pcap_detail::store_le32(&h[8], captured_length);
  pcap_detail::store_le32(&h[12], original_length);
  return h;
}

class PcapWriter {
 public:
  // Creates (truncates) `path` and writes the global header. The error is a one-line reason.
  static Result<std::unique_ptr<PcapWriter>, std::string> open(const std::string& path);

  ~PcapWriter();
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;

  // Appends one packet stamped with CLOCK_REALTIME; packets longer than the snaplen are
  // truncated to it. Buffered: call flush() to make it visible to readers. Failures are
  // counted (error_count), never thrown, so tracing cannot break the data path.
  void write(std::span<const uint8_t> packet);
  void flush();

  uint64_t packets_written() const { return packets_written_; }
  uint64_t error_count() const { return error_count_; }

 private:
  static constexpr size_t buffer_size = 1 << 20;

  PcapWriter(std::FILE* file, std::unique_ptr<char[]> buffer);

  std::unique_ptr<char[]> buffer_;  // stdio buffer; must outlive file_ (closed in ~PcapWriter)
  std::FILE* file_;
  uint64_t packets_written_ = 0;
  uint64_t error_count_ = 0;
};

}  // namespace roam
