#include "stack/migrate/checkpoint.hpp"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "stack/wire/byte_reader.hpp"
#include "stack/wire/byte_writer.hpp"

namespace roam::migrate {

namespace {

constexpr std::string_view key_label = "roamstack checkpoint v1";
constexpr std::array<uint8_t, 4> magic{'R', 'S', 'C', 'K'};

static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == checkpoint_key_bytes);
static_assert(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES == checkpoint_nonce_bytes);
static_assert(crypto_aead_xchacha20poly1305_ietf_ABYTES == checkpoint_tag_bytes);

void encode_header(const CheckpointHeader& header, std::vector<uint8_t>& out) {
  wire::put_bytes(out, magic);
  wire::put_u8(out, checkpoint_version);
  wire::put_u64(out, header.connection_id);
  wire::put_bytes(out, header.client_key);
  wire::put_u64(out, header.generation);
}

}  // namespace

const char* checkpoint_error_name(CheckpointError error) {
  switch (error) {
    case CheckpointError::truncated: return "truncated";
    case CheckpointError::bad_magic: return "bad_magic";
    case CheckpointError::unknown_version: return "unknown_version";
    case CheckpointError::bad_field: return "bad_field";
    case CheckpointError::oversized: return "oversized";
    case CheckpointError::forged: return "forged";
    case CheckpointError::wrong_client: return "wrong_client";
    case CheckpointError::wrong_connection: return "wrong_connection";
    case CheckpointError::malformed: return "malformed";
    case CheckpointError::replayed: return "replayed";
    case CheckpointError::stale: return "stale";
    case CheckpointError::expired: return "expired";
  }
  return "unknown";
}

CheckpointKey CheckpointKey::derive(const crypto::ChainKey& pool_seed) {
  crypto::ChainKey digest = crypto::labelled_hash(key_label, pool_seed);
  CheckpointKey key;
  std::memcpy(key.key_.data(), digest.data(), checkpoint_key_bytes);
  sodium_memzero(digest.data(), digest.size());
  return key;
}

Result<CheckpointHeader, CheckpointError> peek_checkpoint_header(std::span<const uint8_t> sealed) {
  if (sealed.size() > max_sealed_checkpoint) return unexpected(CheckpointError::oversized);
  if (sealed.size() < checkpoint_overhead) return unexpected(CheckpointError::truncated);
  wire::ByteReader r(sealed);
  auto m = r.take(magic.size());
  if (!std::equal(m.begin(), m.end(), magic.begin())) return unexpected(CheckpointError::bad_magic);
  if (r.u8() != checkpoint_version) return unexpected(CheckpointError::unknown_version);
  CheckpointHeader header;
  header.connection_id = r.u64();
  auto client = r.take(checkpoint_client_key_bytes);
  std::memcpy(header.client_key.data(), client.data(), client.size());
  header.generation = r.u64();
  if (header.connection_id == 0 || header.generation == 0) return unexpected(CheckpointError::bad_field);
  return header;
}

Result<std::vector<uint8_t>, CheckpointError> seal_checkpoint(const CheckpointKey& key, const Checkpoint& checkpoint) {
  std::array<uint8_t, checkpoint_nonce_bytes> nonce;
  randombytes_buf(nonce.data(), nonce.size());
  return seal_checkpoint(key, checkpoint, nonce);
}

Result<std::vector<uint8_t>, CheckpointError> seal_checkpoint(const CheckpointKey& key, const Checkpoint& checkpoint,
                                                              std::span<const uint8_t, checkpoint_nonce_bytes> nonce) {
  const CheckpointHeader& header = checkpoint.header;
  if (header.connection_id == 0 || header.generation == 0 || checkpoint.snapshot.connection_id != header.connection_id)
    return unexpected(CheckpointError::bad_field);
  if (checkpoint.snapshot.owner && *checkpoint.snapshot.owner != header.client_key)
    return unexpected(CheckpointError::bad_field);
  if (!wire::validate_snapshot(checkpoint.snapshot)) return unexpected(CheckpointError::malformed);
  std::vector<uint8_t> plaintext;
  wire::put_u64(plaintext, checkpoint.created_at_ms);
  wire::encode_snapshot(checkpoint.snapshot, plaintext);
  if (plaintext.size() + checkpoint_overhead > max_sealed_checkpoint) {
    wire::wipe_bytes(plaintext.data(), plaintext.size());
    return unexpected(CheckpointError::oversized);
  }
  std::vector<uint8_t> out;
  out.reserve(plaintext.size() + checkpoint_overhead);
  encode_header(header, out);
  wire::put_bytes(out, nonce);
  size_t at = out.size();
  out.resize(at + plaintext.size() + checkpoint_tag_bytes);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data() + at, &written, plaintext.data(), plaintext.size(), out.data(),
                                             checkpoint_header_bytes, nullptr, nonce.data(), key.data());
  // The plaintext holds the segment-MAC key when the connection has one.
  wire::wipe_bytes(plaintext.data(), plaintext.size());
  out.resize(at + static_cast<size_t>(written));
  return out;
}

Result<Checkpoint, CheckpointError> open_checkpoint(const CheckpointKey& key, std::span<const uint8_t> sealed,
                                                    const CheckpointClientKey& client, uint64_t connection_id,
                                                    const OpenLimits& limits) {
  auto header = peek_checkpoint_header(sealed);
  if (!header) return unexpected(header.error());
  // Public fields first (no state, no key involved): another client's or another
  // connection's checkpoint is refused by name rather than as a forgery.
  if (sodium_memcmp(header->client_key.data(), client.data(), client.size()) != 0)
    return unexpected(CheckpointError::wrong_client);
  if (header->connection_id != connection_id) return unexpected(CheckpointError::wrong_connection);
  const uint8_t* nonce = sealed.data() + checkpoint_header_bytes;
  auto ciphertext = sealed.subspan(checkpoint_header_bytes + checkpoint_nonce_bytes);
  std::vector<uint8_t> plaintext(ciphertext.size() - checkpoint_tag_bytes);
  unsigned long long plain_size = 0;
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(plaintext.data(), &plain_size, nullptr, ciphertext.data(),
                                                 ciphertext.size(), sealed.data(), checkpoint_header_bytes, nonce,
                                                 key.data()) != 0)
    return unexpected(CheckpointError::forged);
  struct Wipe {
    std::vector<uint8_t>& bytes;
    ~Wipe() { wire::wipe_bytes(bytes.data(), bytes.size()); }
  } wipe{plaintext};
  wire::ByteReader r(plaintext);
  Checkpoint out;
  out.header = *header;
  out.created_at_ms = r.u64();
  if (r.failed()) return unexpected(CheckpointError::malformed);
  auto snapshot = wire::decode_snapshot(std::span<const uint8_t>(plaintext).subspan(8));
  if (!snapshot || snapshot->connection_id != connection_id) return unexpected(CheckpointError::malformed);
  if (snapshot->owner && *snapshot->owner != header->client_key) return unexpected(CheckpointError::malformed);
  out.snapshot = std::move(*snapshot);
  if (out.created_at_ms > limits.now_ms + limits.max_future_ms) return unexpected(CheckpointError::expired);
  if (limits.max_age_ms != 0 && limits.now_ms > out.created_at_ms &&
      limits.now_ms - out.created_at_ms > limits.max_age_ms)
    return unexpected(CheckpointError::expired);
  return out;
}

Result<Ok, CheckpointError> CheckpointLedger::check(const CheckpointHeader& header) const {
  auto it = generations_.find({header.client_key, header.connection_id});
  if (it == generations_.end()) return Ok{};
  if (header.generation == it->second) return unexpected(CheckpointError::replayed);
  if (header.generation < it->second) return unexpected(CheckpointError::stale);
  return Ok{};
}

void CheckpointLedger::record(const CheckpointHeader& header) {
  auto key = std::make_pair(header.client_key, header.connection_id);
  auto it = generations_.find(key);
  if (it != generations_.end()) {
    it->second = std::max(it->second, header.generation);
    return;
  }
  if (capacity_ == 0) return;
  if (generations_.size() >= capacity_) {
    auto lowest = std::min_element(generations_.begin(), generations_.end(),
                                   [](const auto& a, const auto& b) { return a.second < b.second; });
    generations_.erase(lowest);
  }
  generations_.emplace(key, header.generation);
}

uint64_t CheckpointCounters::refused_total() const {
  uint64_t total = 0;
  for (uint64_t n : refused) total += n;
  return total;
}

}  // namespace roam::migrate
