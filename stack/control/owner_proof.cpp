#include "stack/control/owner_proof.hpp"

#include <cstring>

#include "stack/wire/owner_proof_option.hpp"

namespace roam {

namespace {
static_assert(crypto::owner_channel_tag_bytes == wire::owner_proof_tag_bytes);
static_assert(crypto::owner_proof_mac_bytes == wire::owner_proof_mac_bytes);
static_assert(wire::owner_proof_option_bytes % 4 == 0);
static_assert(crypto::key_bytes == owner_key_bytes);

uint64_t tag_value(std::span<const uint8_t, wire::owner_proof_tag_bytes> tag) {
  uint64_t value = 0;
  std::memcpy(&value, tag.data(), sizeof value);
  return value;
}
}  // namespace

OwnerKey owner_key_of(const crypto::PublicKey& key) {
  OwnerKey owner;
  std::memcpy(owner.data(), key.data(), owner.size());
  return owner;
}

size_t OwnerProofSigner::option_length() const {
  return wire::owner_proof_option_bytes;
}

void OwnerProofSigner::write_option(uint32_t isn, uint16_t remote_port, std::span<uint8_t> out) const {
  wire::OwnerProofOption option;
  option.channel_tag = key_.channel_tag();
  option.mac = key_.mac(isn, remote_port);
  wire::write_owner_proof_option(option, out);
}

OwnerProofVerifier::OwnerProofVerifier(Node& node) : node_(node) {
  node_.add_input_filter(InputStage::authenticate, this);
}

OwnerProofVerifier::~OwnerProofVerifier() {
  node_.remove_input_filter(this);
}

void OwnerProofVerifier::add_channel(const void* channel, std::span<const uint8_t, 64> handshake_hash,
                                     const crypto::PublicKey& owner) {
  remove_channel(channel);
  auto key = std::make_unique<crypto::OwnerProofKey>(handshake_hash);
  uint64_t tag = tag_value(key->channel_tag());
  // Tags are 64 bits from distinct handshakes: a collision is a 2^-64 event. The newer
  // channel takes the tag; the older one's later SYNs go owner-less.
  auto old = by_tag_.find(tag);
  if (old != by_tag_.end()) tag_of_.erase(old->second.channel);
  by_tag_.insert_or_assign(tag, Channel{std::move(key), owner_key_of(owner), channel});
  tag_of_[channel] = tag;
}

void OwnerProofVerifier::remove_channel(const void* channel) {
  auto it = tag_of_.find(channel);
  if (it == tag_of_.end()) return;
  by_tag_.erase(it->second);
  tag_of_.erase(it);
}

FilterVerdict OwnerProofVerifier::on_input(const InboundPacket& packet) {
  if (!packet.tcp) return FilterVerdict::pass;
  const wire::TcpSegmentView& tcp = packet.tcp->segment;
  if (!tcp.has(wire::TcpSegmentView::SYN) || tcp.has(wire::TcpSegmentView::ACK)) return FilterVerdict::pass;
  // The NAT handover's synthetic SYN joins a connection that exists (its owner came in
  // its snapshot): the handover stage authenticates it.
  if (packet.tcp->handover_option) return FilterVerdict::pass;
  wire::OwnerProofOption option;
  switch (wire::find_owner_proof_option(tcp.options, option)) {
    case wire::MacOptionLookup::absent:
      ++counters_.syns_unproven;
      return FilterVerdict::pass;
    case wire::MacOptionLookup::malformed:
      ++counters_.syns_malformed;
      return FilterVerdict::drop;
    case wire::MacOptionLookup::found:
      break;
  }
  auto it = by_tag_.find(tag_value(option.channel_tag));
  if (it == by_tag_.end()) {
    ++counters_.syns_unknown_channel;
    return FilterVerdict::pass;
  }
  if (!it->second.key->verify(tcp.seq, tcp.dst_port, option.mac)) {
    ++counters_.syns_forged;
    return FilterVerdict::drop;
  }
  ++counters_.syns_proven;
  remember_syn_owner(packet.tcp->flow, tcp.seq, it->second.owner);
  return FilterVerdict::pass;
}

}  // namespace roam
