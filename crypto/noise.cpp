#include "crypto/noise.hpp"

#include <cstring>
#include <string_view>

namespace roam::crypto {

namespace {

constexpr size_t key_length = 32;
constexpr size_t block_bytes = 128;  // BLAKE2b block length (HMAC pads keys to it)

enum class Token : uint8_t { e, s, ee, es, se, ss };

// The message patterns (Noise spec sections 7.4 and 7.5).
constexpr Token xx_0[] = {Token::e};
constexpr Token xx_1[] = {Token::e, Token::ee, Token::s, Token::es};
constexpr Token xx_2[] = {Token::s, Token::se};
constexpr Token ik_0[] = {Token::e, Token::es, Token::s, Token::ss};
constexpr Token ik_1[] = {Token::e, Token::ee, Token::se};

std::span<const Token> tokens_of(NoisePattern pattern, size_t message) {
  if (pattern == NoisePattern::xx) {
    if (message == 0) return xx_0;
    if (message == 1) return xx_1;
    return xx_2;
  }
  return message == 0 ? std::span<const Token>(ik_0) : std::span<const Token>(ik_1);
}

const char* protocol_name(NoisePattern pattern) {
  return pattern == NoisePattern::xx ? "Noise_XX_25519_ChaChaPoly_BLAKE2b" : "Noise_IK_25519_ChaChaPoly_BLAKE2b";
}

void blake2b(std::span<const std::span<const uint8_t>> parts, uint8_t* out) {
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, noise_hash_bytes);
  for (auto part : parts) crypto_generichash_update(&state, part.data(), part.size());
  crypto_generichash_final(&state, out, noise_hash_bytes);
  sodium_memzero(&state, sizeof state);
}

// HMAC (RFC 2104) over BLAKE2b, as Noise section 4.3 defines it. Keys are at most 64 bytes.
void hmac(std::span<const uint8_t> key, std::span<const std::span<const uint8_t>> data, uint8_t* out) {
  ScratchSecret<block_bytes> pad;
  std::memcpy(pad.data(), key.data(), key.size());
  for (size_t i = 0; i < block_bytes; ++i) pad.data()[i] ^= 0x36;
  crypto_generichash_state state;
  crypto_generichash_init(&state, nullptr, 0, noise_hash_bytes);
  crypto_generichash_update(&state, pad.data(), block_bytes);
  for (auto part : data) crypto_generichash_update(&state, part.data(), part.size());
  ScratchSecret<noise_hash_bytes> inner;
  crypto_generichash_final(&state, inner.data(), noise_hash_bytes);
  for (size_t i = 0; i < block_bytes; ++i) pad.data()[i] ^= 0x36 ^ 0x5c;
  crypto_generichash_init(&state, nullptr, 0, noise_hash_bytes);
  crypto_generichash_update(&state, pad.data(), block_bytes);
  crypto_generichash_update(&state, inner.data(), noise_hash_bytes);
  crypto_generichash_final(&state, out, noise_hash_bytes);
  sodium_memzero(&state, sizeof state);
}

// HKDF(chaining_key, input, 2) of Noise section 4.3: two 64-byte outputs.
void hkdf2(std::span<const uint8_t> chaining_key, std::span<const uint8_t> input, uint8_t* out1, uint8_t* out2) {
  ScratchSecret<noise_hash_bytes> temp;
  std::span<const uint8_t> in[] = {input};
  hmac(chaining_key, in, temp.data());
  const uint8_t one = 1, two = 2;
  std::span<const uint8_t> first[] = {std::span(&one, 1)};
  hmac(temp.span(), first, out1);
  std::span<const uint8_t> second[] = {std::span<const uint8_t>(out1, noise_hash_bytes), std::span(&two, 1)};
  hmac(temp.span(), second, out2);
}

void nonce_bytes(uint64_t n, uint8_t* out) {
  std::memset(out, 0, 4);
  for (int i = 0; i < 8; ++i) out[4 + i] = static_cast<uint8_t>(n >> (8 * i));
}

}  // namespace

const char* noise_error_name(NoiseError error) {
  switch (error) {
    case NoiseError::wrong_turn:
      return "not this side's turn in the handshake";
    case NoiseError::message_too_long:
      return "message longer than 65535 bytes";
    case NoiseError::truncated:
      return "handshake message too short";
    case NoiseError::decrypt_failed:
      return "authentication failed";
    case NoiseError::bad_public_key:
      return "invalid public key (low-order point)";
    case NoiseError::handshake_done:
      return "handshake already finished";
    case NoiseError::nonce_exhausted:
      return "cipher nonce exhausted";
  }
  return "unknown noise error";
}

NoiseCipher::NoiseCipher(std::span<const uint8_t, 32> key) {
  set_key(key);
}

void NoiseCipher::set_key(std::span<const uint8_t, 32> key) {
  std::memcpy(key_.data(), key.data(), key_length);
  has_key_ = true;
  nonce_ = 0;
}

Result<Ok, NoiseError> NoiseCipher::encrypt(std::span<const uint8_t> ad, std::span<const uint8_t> plaintext,
                                            std::vector<uint8_t>& out) {
  if (!has_key_) {
    out.insert(out.end(), plaintext.begin(), plaintext.end());
    return Ok{};
  }
  if (nonce_ == UINT64_MAX) return unexpected(NoiseError::nonce_exhausted);
  uint8_t nonce[12];
  nonce_bytes(nonce_, nonce);
  size_t at = out.size();
  out.resize(at + plaintext.size() + noise_tag_bytes);
  unsigned long long written = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out.data() + at, &written, plaintext.data(), plaintext.size(), ad.data(),
                                            ad.size(), nullptr, nonce, key_.data());
  out.resize(at + static_cast<size_t>(written));
  ++nonce_;
  return Ok{};
}

Result<Ok, NoiseError> NoiseCipher::decrypt(std::span<const uint8_t> ad, std::span<const uint8_t> ciphertext,
                                            std::vector<uint8_t>& out) {
  if (!has_key_) {
    out.insert(out.end(), ciphertext.begin(), ciphertext.end());
    return Ok{};
  }
  auto result = decrypt_with_nonce(nonce_, ad, ciphertext, out);
  if (result) ++nonce_;
  return result;
}

Result<Ok, NoiseError> NoiseCipher::decrypt_with_nonce(uint64_t counter, std::span<const uint8_t> ad,
                                                       std::span<const uint8_t> ciphertext,
                                                       std::vector<uint8_t>& out) const {
  if (!has_key_) return unexpected(NoiseError::decrypt_failed);
  if (counter == UINT64_MAX) return unexpected(NoiseError::nonce_exhausted);
  if (ciphertext.size() < noise_tag_bytes) return unexpected(NoiseError::truncated);
  uint8_t nonce[12];
  nonce_bytes(counter, nonce);
  size_t at = out.size();
  out.resize(at + ciphertext.size() - noise_tag_bytes);
  unsigned long long written = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(out.data() + at, &written, nullptr, ciphertext.data(),
                                                ciphertext.size(), ad.data(), ad.size(), nonce, key_.data()) != 0) {
    out.resize(at);
    return unexpected(NoiseError::decrypt_failed);
  }
  return Ok{};
}

NoiseHandshake::NoiseHandshake(NoisePattern pattern, NoiseRole role, const IdentityKey& local_static,
                               std::span<const uint8_t> prologue, std::optional<PublicKey> remote_static)
    : pattern_(pattern), role_(role), local_static_(local_static), remote_static_(remote_static) {
  // InitializeSymmetric: a protocol name of at most 64 bytes is used as h, zero-padded.
  std::string_view name = protocol_name(pattern);
  std::memcpy(h_.data(), name.data(), name.size());
  std::memcpy(ck_.data(), h_.data(), noise_hash_bytes);
  mix_hash(prologue);
  if (pattern_ == NoisePattern::ik) {
    // Pre-message "<- s": both sides hash the responder's static key.
    if (role_ == NoiseRole::initiator) {
      if (!remote_static_)
        failed_ = true;  // IK needs the responder's key up front
      else
        mix_hash(*remote_static_);
    } else {
      mix_hash(local_static_.public_key());
    }
  }
}

void NoiseHandshake::set_ephemeral_for_test(std::span<const uint8_t, 32> secret) {
  std::memcpy(ephemeral_.data(), secret.data(), key_length);
  crypto_scalarmult_base(ephemeral_public_.data(), ephemeral_.data());
  ephemeral_fixed_ = true;
}

size_t NoiseHandshake::message_count() const {
  return pattern_ == NoisePattern::xx ? 3 : 2;
}

bool NoiseHandshake::my_turn() const {
  bool initiator_sends = next_message_ % 2 == 0;
  return !failed_ && !finished() && initiator_sends == (role_ == NoiseRole::initiator);
}

void NoiseHandshake::mix_hash(std::span<const uint8_t> data) {
  std::span<const uint8_t> parts[] = {h_, data};
  blake2b(parts, h_.data());
}

void NoiseHandshake::mix_key(std::span<const uint8_t> input) {
  ScratchSecret<noise_hash_bytes> next_ck;
  ScratchSecret<noise_hash_bytes> temp_key;
  hkdf2(ck_.span(), input, next_ck.data(), temp_key.data());
  std::memcpy(ck_.data(), next_ck.data(), noise_hash_bytes);
  cipher_.set_key(std::span<const uint8_t, 32>(temp_key.data(), key_length));
}

Result<Ok, NoiseError> NoiseHandshake::mix_dh(const uint8_t* secret, const uint8_t* public_key) {
  ScratchSecret<key_length> shared;
  // libsodium refuses (returns -1) when the result is all zeros: a low-order point.
  if (crypto_scalarmult(shared.data(), secret, public_key) != 0) return unexpected(NoiseError::bad_public_key);
  mix_key(shared.span());
  return Ok{};
}

// The DH tokens, from this side's point of view (Noise section 5.3): "es" is DH(e, rs) for
// the initiator and DH(s, re) for the responder; "se" the other way round.
Result<Ok, NoiseError> NoiseHandshake::mix_dh_token(uint8_t token_value) {
  auto token = static_cast<Token>(token_value);
  bool initiator = role_ == NoiseRole::initiator;
  const uint8_t* s = local_static_.secret_key().data();
  const uint8_t* e = ephemeral_.data();
  switch (token) {
    case Token::ee:
      return mix_dh(e, remote_ephemeral_.data());
    case Token::es:
      return initiator ? mix_dh(e, remote_static_->data()) : mix_dh(s, remote_ephemeral_.data());
    case Token::se:
      return initiator ? mix_dh(s, remote_ephemeral_.data()) : mix_dh(e, remote_static_->data());
    case Token::ss:
      return mix_dh(s, remote_static_->data());
    default:
      return Ok{};
  }
}

Result<Ok, NoiseError> NoiseHandshake::encrypt_and_hash(std::span<const uint8_t> plaintext, std::vector<uint8_t>& out) {
  size_t at = out.size();
  auto done = cipher_.encrypt(h_, plaintext, out);
  if (!done) return done;
  mix_hash(std::span<const uint8_t>(out.data() + at, out.size() - at));
  return Ok{};
}

Result<Ok, NoiseError> NoiseHandshake::decrypt_and_hash(std::span<const uint8_t> ciphertext,
                                                        std::vector<uint8_t>& out) {
  auto done = cipher_.decrypt(h_, ciphertext, out);
  if (!done) return done;
  mix_hash(ciphertext);
  return Ok{};
}

Result<std::vector<uint8_t>, NoiseError> NoiseHandshake::write_message(std::span<const uint8_t> payload) {
  if (finished()) return unexpected(NoiseError::handshake_done);
  if (!my_turn()) return unexpected(NoiseError::wrong_turn);
  std::vector<uint8_t> message;
  auto fail = [this](NoiseError error) {
    failed_ = true;
    return unexpected(error);
  };
  for (Token token : tokens_of(pattern_, next_message_)) {
    Result<Ok, NoiseError> step = Ok{};
    switch (token) {
      case Token::e:
        if (!ephemeral_fixed_) {
          randombytes_buf(ephemeral_.data(), key_length);
          crypto_scalarmult_base(ephemeral_public_.data(), ephemeral_.data());
        }
        message.insert(message.end(), ephemeral_public_.begin(), ephemeral_public_.end());
        mix_hash(ephemeral_public_);
        break;
      case Token::s:
        step = encrypt_and_hash(local_static_.public_key(), message);
        break;
      case Token::ee:
      case Token::es:
      case Token::se:
      case Token::ss:
        step = mix_dh_token(static_cast<uint8_t>(token));
        break;
    }
    if (!step) return fail(step.error());
  }
  auto sealed = encrypt_and_hash(payload, message);
  if (!sealed) return fail(sealed.error());
  if (message.size() > noise_max_message) return fail(NoiseError::message_too_long);
  ++next_message_;
  return message;
}

Result<std::vector<uint8_t>, NoiseError> NoiseHandshake::read_message(std::span<const uint8_t> message) {
  if (finished()) return unexpected(NoiseError::handshake_done);
  if (failed_ || my_turn()) return unexpected(NoiseError::wrong_turn);
  auto fail = [this](NoiseError error) {
    failed_ = true;
    return unexpected(error);
  };
  if (message.size() > noise_max_message) return fail(NoiseError::message_too_long);
  size_t offset = 0;
  for (Token token : tokens_of(pattern_, next_message_)) {
    Result<Ok, NoiseError> step = Ok{};
    switch (token) {
      case Token::e:
        if (message.size() - offset < key_length) return fail(NoiseError::truncated);
        std::memcpy(remote_ephemeral_.data(), message.data() + offset, key_length);
        offset += key_length;
        mix_hash(remote_ephemeral_);
        break;
      case Token::s: {
        size_t length = key_length + (cipher_.has_key() ? noise_tag_bytes : 0);
        if (message.size() - offset < length) return fail(NoiseError::truncated);
        std::vector<uint8_t> key;
        step = decrypt_and_hash(message.subspan(offset, length), key);
        if (step) {
          PublicKey remote{};
          std::memcpy(remote.data(), key.data(), key_length);
          remote_static_ = remote;
        }
        offset += length;
        break;
      }
      case Token::ee:
      case Token::es:
      case Token::se:
      case Token::ss:
        step = mix_dh_token(static_cast<uint8_t>(token));
        break;
    }
    if (!step) return fail(step.error());
  }
  std::vector<uint8_t> payload;
  auto opened = decrypt_and_hash(message.subspan(offset), payload);
  if (!opened) return fail(opened.error());
  ++next_message_;
  return payload;
}

NoiseTransport NoiseHandshake::split() {
  ScratchSecret<noise_hash_bytes> k1;
  ScratchSecret<noise_hash_bytes> k2;
  hkdf2(ck_.span(), {}, k1.data(), k2.data());
  NoiseTransport transport;
  NoiseCipher c1(std::span<const uint8_t, 32>(k1.data(), key_length));
  NoiseCipher c2(std::span<const uint8_t, 32>(k2.data(), key_length));
  if (role_ == NoiseRole::initiator) {
    transport.send = std::move(c1);
    transport.receive = std::move(c2);
  } else {
    transport.send = std::move(c2);
    transport.receive = std::move(c1);
  }
  transport.handshake_hash = h_;
  if (remote_static_) transport.remote_static = *remote_static_;
  return transport;
}

}  // namespace roam::crypto
