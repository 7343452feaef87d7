#include "stack/wire/segment_mac_option.hpp"

#include <algorithm>
#include <cstring>

#include "stack/wire/checksum.hpp"

namespace roam::wire {

namespace {

// Whether the option list has an End of Option List (or is malformed) before its end.
bool ends_early(std::span<const uint8_t> options) {
  size_t at = 0;
  while (at < options.size()) {
    uint8_t kind = options[at];
    if (kind == 0) return true;
    if (kind == 1) {
      ++at;
      continue;
    }
    if (at + 1 >= options.size() || options[at + 1] < 2) return true;
    at += options[at + 1];
  }
  return at != options.size();
}

}  // namespace

MacOptionLookup find_experimental_option(std::span<const uint8_t> options, uint16_t exid,
                                         std::span<const uint8_t>& data) {
  bool found = false;
  size_t at = 0;
  while (at < options.size()) {
    uint8_t kind = options[at];
    if (kind == 0) break;  // end of options
    if (kind == 1) {       // no-op
      ++at;
      continue;
    }
    if (at + 1 >= options.size()) return MacOptionLookup::malformed;
    uint8_t length = options[at + 1];
    if (length < 2 || at + length > options.size()) return MacOptionLookup::malformed;
    if (kind == tcp_option_experimental && length >= 4 && ((options[at + 2] << 8) | options[at + 3]) == exid) {
      if (found) return MacOptionLookup::malformed;
      data = options.subspan(at + 4, length - 4u);
      found = true;
    }
    at += length;
  }
  return found ? MacOptionLookup::found : MacOptionLookup::absent;
}

MacOptionLookup find_segment_mac(std::span<const uint8_t> options, std::array<uint8_t, segment_mac_bytes>& mac) {
  std::span<const uint8_t> data;
  auto lookup = find_experimental_option(options, segment_mac_exid, data);
  if (lookup != MacOptionLookup::found) return lookup;
  if (data.size() != segment_mac_bytes) return MacOptionLookup::malformed;
  std::memcpy(mac.data(), data.data(), segment_mac_bytes);
  return MacOptionLookup::found;
}

size_t append_segment_mac(std::span<const uint8_t> packet, const PacketInfo& info, const TcpSegmentView& tcp,
                          std::span<const uint8_t, segment_mac_bytes> mac, std::span<uint8_t> out) {
  const size_t tcp_at = info.transport_offset;
  const size_t header = tcp.header_length;
  const size_t new_header = header + segment_mac_option_bytes;
  const size_t new_length = size_t{info.length} + segment_mac_option_bytes;
  if (new_header > 60 || new_length > 65535 || out.size() < new_length) return 0;
  // Receivers stop reading options at End of Option List: an option after it is unseen.
  // (lwIP pads with NOPs and never writes one; a packet that has one stays unsigned.)
  if (ends_early(tcp.options)) return 0;
  // IP header and TCP header as they were, then the option, then the payload.
  std::memcpy(out.data(), packet.data(), tcp_at + header);
  uint8_t* option = out.data() + tcp_at + header;
  option[0] = tcp_option_experimental;
  option[1] = segment_mac_option_bytes;
  option[2] = static_cast<uint8_t>(segment_mac_exid >> 8);
  option[3] = static_cast<uint8_t>(segment_mac_exid);
  std::memcpy(option + 4, mac.data(), segment_mac_bytes);
  std::memcpy(option + segment_mac_option_bytes, packet.data() + tcp_at + header, info.length - tcp_at - header);

  uint8_t* ip = out.data();
  if (info.version == 4) {
    ip[2] = static_cast<uint8_t>(new_length >> 8);
    ip[3] = static_cast<uint8_t>(new_length);
    ip[10] = ip[11] = 0;
    uint16_t sum = internet_checksum(std::span<const uint8_t>(ip, tcp_at));
    ip[10] = static_cast<uint8_t>(sum >> 8);
    ip[11] = static_cast<uint8_t>(sum);
  } else {
    size_t payload_length = new_length - 40;
    ip[4] = static_cast<uint8_t>(payload_length >> 8);
    ip[5] = static_cast<uint8_t>(payload_length);
  }
  // The TCP checksum, updated rather than summed again (RFC 1624: HC' = ~(~HC + ~m + m')):
  // the option is whole 16-bit words inserted at a word boundary, so the payload's words
  // keep their alignment; what changes is the data offset word, the pseudo header's
  // length (+16), and the option's own words.
  uint8_t* t = out.data() + tcp_at;
  const auto old_offset_word = static_cast<uint16_t>((t[12] << 8) | t[13]);
  t[12] = static_cast<uint8_t>(((new_header / 4) << 4) | (t[12] & 0x0F));
  const auto new_offset_word = static_cast<uint16_t>((t[12] << 8) | t[13]);
  const auto old_checksum = static_cast<uint16_t>((t[16] << 8) | t[17]);
  uint32_t acc = static_cast<uint16_t>(~old_checksum);
  acc += static_cast<uint16_t>(~old_offset_word);
  acc += new_offset_word;
  acc += segment_mac_option_bytes;  // the pseudo header's TCP length grew by this much
  acc = checksum_add(acc, std::span<const uint8_t>(option, segment_mac_option_bytes));
  uint16_t sum = checksum_fold(acc);
  t[16] = static_cast<uint8_t>(sum >> 8);
  t[17] = static_cast<uint8_t>(sum);
  return new_length;
}

}  // namespace roam::wire
