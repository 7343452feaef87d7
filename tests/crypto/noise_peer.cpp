// noise_peer: one side of a Noise handshake over stdin/stdout, for the interop test with
// an independent implementation (tests/crypto/noise_interop_test.py, python3-dissononce).
// Frames: u16 big-endian length + bytes, as Noise section 13 suggests for streams.
//   noise_peer xx|ik initiator|responder PRIVATE_KEY_BASE64 [REMOTE_PUBLIC_BASE64]
// After the handshake it prints "hash HEX remote BASE64" to stderr, then answers one
// transport message with "echo:" + its plaintext, and exits 0 (1 on any failure).
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "crypto/noise.hpp"

namespace {

using namespace roam::crypto;

bool read_frame(std::vector<uint8_t>& out) {
  uint8_t header[2];
  if (std::fread(header, 1, 2, stdin) != 2) return false;
  out.resize(static_cast<size_t>(header[0] << 8 | header[1]));
  return std::fread(out.data(), 1, out.size(), stdin) == out.size();
}

bool write_frame(const std::vector<uint8_t>& bytes) {
  uint8_t header[2] = {static_cast<uint8_t>(bytes.size() >> 8), static_cast<uint8_t>(bytes.size())};
  bool ok =
      std::fwrite(header, 1, 2, stdout) == 2 && std::fwrite(bytes.data(), 1, bytes.size(), stdout) == bytes.size();
  return std::fflush(stdout) == 0 && ok;
}

int fail(const char* what) {
  std::fprintf(stderr, "noise_peer: %s\n", what);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return fail("usage: noise_peer xx|ik initiator|responder KEY [REMOTE]");
  NoisePattern pattern = std::strcmp(argv[1], "ik") == 0 ? NoisePattern::ik : NoisePattern::xx;
  NoiseRole role = std::strcmp(argv[2], "initiator") == 0 ? NoiseRole::initiator : NoiseRole::responder;
  auto key = IdentityKey::from_base64(argv[3]);
  if (!key) return fail("bad private key");
  std::optional<PublicKey> remote;
  if (argc > 4) {
    remote = public_key_from_base64(argv[4]);
    if (!remote) return fail("bad remote key");
  }
  const std::string prologue = "roamstack interop";
  NoiseHandshake handshake(pattern, role, key.value(),
                           std::span(reinterpret_cast<const uint8_t*>(prologue.data()), prologue.size()), remote);
  const std::string hello =
      role == NoiseRole::initiator ? "hello from the roamstack initiator" : "hello from the roamstack responder";
  std::vector<uint8_t> frame;
  while (!handshake.finished()) {
    if (handshake.my_turn()) {
      auto message = handshake.write_message(std::span(reinterpret_cast<const uint8_t*>(hello.data()), hello.size()));
      if (!message || !write_frame(*message)) return fail("write_message");
    } else {
      if (!read_frame(frame)) return fail("peer closed during the handshake");
      auto payload = handshake.read_message(frame);
      if (!payload) return fail(noise_error_name(payload.error()));
      std::fprintf(stderr, "payload %.*s\n", static_cast<int>(payload->size()),
                   reinterpret_cast<const char*>(payload->data()));
    }
  }
  auto transport = handshake.split();
  std::string hash_hex;
  for (uint8_t b : transport.handshake_hash) {
    char two[3];
    std::snprintf(two, sizeof two, "%02x", b);
    hash_hex += two;
  }
  std::fprintf(stderr, "hash %s remote %s\n", hash_hex.c_str(), to_base64(transport.remote_static).c_str());
  if (!read_frame(frame)) return fail("peer closed before its transport message");
  std::vector<uint8_t> plaintext;
  if (!transport.receive.decrypt({}, frame, plaintext)) return fail("transport message failed authentication");
  std::vector<uint8_t> reply = {'e', 'c', 'h', 'o', ':'};
  reply.insert(reply.end(), plaintext.begin(), plaintext.end());
  std::vector<uint8_t> sealed;
  if (!transport.send.encrypt({}, reply, sealed) || !write_frame(sealed)) return fail("transport reply");
  return 0;
}
