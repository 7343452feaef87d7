// acm_bench: the CPU cost of the control channel on one core, in-process (no I/O).
//   handshake_ms        one complete Noise XX handshake, both ends (median of --handshakes)
//   acm_verify_per_s    ACMs sealed by a server channel, then opened, decoded and checked by
//                       the client's channel and AcmFilter (what a real ACM costs)
//   forged_rejected_per_s  frames of an ACM's size with a wrong tag, rejected by the
//                       client's channel (what a flood of forgeries that reaches the
//                       channel costs)
//   aead_open_per_s     reference: libsodium's ChaCha20-Poly1305 open of the same size
// Prints one JSON line.
#include <sodium.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "stack/control/acm_filter.hpp"
#include "stack/control/channel.hpp"

namespace {

using namespace roam;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The hosts' identity keys exist before any channel: they are not part of a handshake.
const crypto::IdentityKey& client_key() {
  static const crypto::IdentityKey key = crypto::IdentityKey::generate();
  return key;
}
const crypto::IdentityKey& server_key() {
  static const crypto::IdentityKey key = crypto::IdentityKey::generate();
  return key;
}

struct Pair {
  control::ControlChannel client{crypto::NoisePattern::xx, crypto::NoiseRole::initiator, client_key(),
                                 control::Hello{control::protocol_version, "client", 0, {}}};
  control::ControlChannel server{crypto::NoisePattern::xx, crypto::NoiseRole::responder, server_key(),
                                 control::Hello{control::protocol_version, "server", 0, {}}};

  static void pump(control::ControlChannel& to, std::vector<uint8_t>& bytes, std::vector<uint8_t>& replies) {
    to.feed(bytes);
    bytes.clear();
    while (true) {
      auto event = to.next(replies);
      if (!event || !event.value()) return;
    }
  }
  bool handshake() {
    std::vector<uint8_t> to_server = client.start(), to_client;
    for (int round = 0; round < 3 && !(client.established() && server.established()); ++round) {
      pump(server, to_server, to_client);
      pump(client, to_client, to_server);
    }
    return client.established() && server.established();
  }
};

control::AddressChange sample_acm(uint64_t sequence, uint64_t now_ms) {
  control::AddressChange acm;
  acm.sequence = sequence;
  randombytes_buf(acm.nonce.data(), acm.nonce.size());
  acm.issued_at_ms = now_ms;
  acm.old_address = *IpAddress::parse("198.18.12.2");
  acm.new_address = *IpAddress::parse("198.18.13.2");
  acm.old_port = acm.new_port = 7000;
  acm.connection_ids = {42};
  return acm;
}

}  // namespace

int main(int argc, char** argv) {
  int handshakes = 300;
  double seconds = 2.0;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--handshakes" && i + 1 < argc) {
      handshakes = std::max(1, std::atoi(argv[++i]));
    } else if (arg == "--seconds" && i + 1 < argc) {
      seconds = std::max(0.1, std::atof(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: acm_bench [--handshakes N] [--seconds S]\n");
      return 2;
    }
  }
  if (sodium_init() < 0) return 1;

  (void)client_key();
  (void)server_key();
  std::vector<double> times;
  for (int i = 0; i < handshakes; ++i) {
    auto start = Clock::now();
    Pair pair;
    if (!pair.handshake()) return 1;
    times.push_back(seconds_since(start) * 1e3);
  }
  std::sort(times.begin(), times.end());
  double handshake_ms = times[times.size() / 2];

  Pair pair;
  if (!pair.handshake()) return 1;
  const uint64_t now_ms = 1'800'000'000'000;
  const std::vector<control::ClientConnection> ours = {{42, *IpAddress::parse("198.18.12.2"), 7000}};
  const auto peer = *IpAddress::parse("198.18.12.2");

  // Real ACMs: seal, open, decode, check, remember.
  control::AcmFilter filter;
  uint64_t verified = 0;
  std::vector<uint8_t> replies;
  auto start = Clock::now();
  while (seconds_since(start) < seconds) {
    for (int i = 0; i < 256; ++i) {
      auto acm = sample_acm(verified + 1, now_ms);
      auto frame = pair.server.seal(acm).value();
      pair.client.feed(frame);
      auto event = pair.client.next(replies);
      if (!event || !event.value()) return 1;
      const auto& got = std::get<control::AddressChange>(event.value()->message);
      auto decision = filter.check(got, peer, ours, now_ms);
      if (decision.verdict != control::AcmVerdict::apply) return 1;
      filter.remember(got, now_ms);
      ++verified;
    }
  }
  double acm_verify_per_s = static_cast<double>(verified) / seconds_since(start);

  // Forgeries of the same size: a genuine frame with its tag flipped, counter varied.
  auto genuine = pair.server.seal(sample_acm(1, now_ms)).value();
  uint64_t rejected = 0;
  start = Clock::now();
  while (seconds_since(start) < seconds) {
    for (int i = 0; i < 256; ++i) {
      auto forged = genuine;
      forged[2 + 7] = static_cast<uint8_t>(rejected);  // counter byte
      forged.back() ^= 0x80;
      pair.client.feed(forged);
      auto event = pair.client.next(replies);
      if (event || event.error() != control::ChannelError::forged) return 1;
      ++rejected;
    }
  }
  double forged_rejected_per_s = static_cast<double>(rejected) / seconds_since(start);
  if (pair.client.counters().messages_in != verified) return 1;

  // Reference: the AEAD open alone, same ciphertext size, wrong tag.
  std::vector<uint8_t> key(crypto_aead_chacha20poly1305_ietf_KEYBYTES), nonce(12), out(genuine.size());
  randombytes_buf(key.data(), key.size());
  std::span<const uint8_t> body(genuine.data() + 2 + 8, genuine.size() - 2 - 8);
  uint64_t opened = 0;
  start = Clock::now();
  while (seconds_since(start) < seconds) {
    for (int i = 0; i < 256; ++i) {
      nonce[0] = static_cast<uint8_t>(opened);
      unsigned long long n = 0;
      if (crypto_aead_chacha20poly1305_ietf_decrypt(out.data(), &n, nullptr, body.data(), body.size(), genuine.data(),
                                                    8, nonce.data(), key.data()) == 0)
        return 1;
      ++opened;
    }
  }
  double aead_open_per_s = static_cast<double>(opened) / seconds_since(start);

  std::printf(
      "{\"handshake_ms\":%.3f,\"acm_verify_per_s\":%.0f,\"forged_rejected_per_s\":%.0f,\"aead_open_per_s\":%.0f,"
      "\"forged_rejected_vs_aead\":%.3f,\"acm_frame_bytes\":%zu}\n",
      handshake_ms, acm_verify_per_s, forged_rejected_per_s, aead_open_per_s, forged_rejected_per_s / aead_open_per_s,
      genuine.size());
  return 0;
}
