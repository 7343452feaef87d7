// Noise XX and IK (25519, ChaChaPoly, BLAKE2b) against the published test vectors of
// flynn/noise (Debian's golang-github-flynn-noise-dev, installed by tools/setup), then the
// failure cases: forged, truncated and replayed messages, wrong keys, wrong turns.
#include "crypto/noise.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace roam::crypto;

const char* vectors_path = "/usr/share/gocode/src/github.com/flynn/noise/vectors.txt";

std::vector<uint8_t> unhex(const std::string& text) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < text.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(text.substr(i, 2), nullptr, 16)));
  return out;
}

IdentityKey key_from_hex(const std::string& hex) {
  auto bytes = unhex(hex);
  auto key = IdentityKey::from_base64(to_base64(bytes));
  REQUIRE(key);
  return std::move(key.value());
}

using Vector = std::map<std::string, std::string>;

std::vector<Vector> load_vectors(const std::string& handshake) {
  std::ifstream file(vectors_path);
  REQUIRE_MESSAGE(file.good(), "missing ", vectors_path, ": run tools/setup (golang-github-flynn-noise-dev)");
  std::vector<Vector> out;
  Vector current;
  std::string line;
  auto flush = [&] {
    if (current.count("handshake") && current["handshake"] == handshake) out.push_back(current);
    current.clear();
  };
  while (std::getline(file, line)) {
    if (line.empty()) {
      flush();
      continue;
    }
    auto eq = line.find('=');
    if (eq != std::string::npos) current[line.substr(0, eq)] = line.substr(eq + 1);
  }
  flush();
  return out;
}

// Plays one vector: handshake messages alternate from the initiator; then transport
// messages alternate again starting with the initiator (flynn/noise's vector convention).
void play(NoisePattern pattern, const Vector& v) {
  auto init_static = key_from_hex(v.at("init_static"));
  auto resp_static = key_from_hex(v.at("resp_static"));
  auto prologue = v.count("prologue") ? unhex(v.at("prologue")) : std::vector<uint8_t>{};
  std::optional<PublicKey> known_responder;
  if (pattern == NoisePattern::ik) known_responder = resp_static.public_key();
  NoiseHandshake initiator(pattern, NoiseRole::initiator, init_static, prologue, known_responder);
  NoiseHandshake responder(pattern, NoiseRole::responder, resp_static, prologue);
  auto ie = unhex(v.at("gen_init_ephemeral"));
  auto re = unhex(v.at("gen_resp_ephemeral"));
  initiator.set_ephemeral_for_test(std::span<const uint8_t, 32>(ie.data(), 32));
  responder.set_ephemeral_for_test(std::span<const uint8_t, 32>(re.data(), 32));
  std::optional<NoiseTransport> initiator_transport, responder_transport;
  const int handshake_messages = pattern == NoisePattern::xx ? 3 : 2;
  for (int i = 0; v.count("msg_" + std::to_string(i) + "_payload"); ++i) {
    auto payload = unhex(v.at("msg_" + std::to_string(i) + "_payload"));
    auto expected = unhex(v.at("msg_" + std::to_string(i) + "_ciphertext"));
    bool from_initiator = i % 2 == 0;
    INFO("message ", i);
    if (!initiator.finished()) {
      NoiseHandshake& sender = from_initiator ? initiator : responder;
      NoiseHandshake& receiver = from_initiator ? responder : initiator;
      auto message = sender.write_message(payload);
      REQUIRE(message);
      CHECK(message.value() == expected);
      auto opened = receiver.read_message(message.value());
      REQUIRE(opened);
      CHECK(opened.value() == payload);
      if (initiator.finished()) {
        REQUIRE(responder.finished());
        CHECK(initiator.handshake_hash() == responder.handshake_hash());
        initiator_transport = initiator.split();
        responder_transport = responder.split();
        CHECK(initiator_transport->remote_static == resp_static.public_key());
        CHECK(responder_transport->remote_static == init_static.public_key());
      }
      continue;
    }
    bool transport_from_initiator = (i - handshake_messages) % 2 == 0;
    NoiseTransport& sender = transport_from_initiator ? *initiator_transport : *responder_transport;
    NoiseTransport& receiver = transport_from_initiator ? *responder_transport : *initiator_transport;
    std::vector<uint8_t> ciphertext, plaintext;
    REQUIRE(sender.send.encrypt({}, payload, ciphertext));
    CHECK(ciphertext == expected);
    REQUIRE(receiver.receive.decrypt({}, ciphertext, plaintext));
    CHECK(plaintext == payload);
  }
  CHECK(initiator_transport.has_value());
}

TEST_CASE("Noise_XX_25519_ChaChaPoly_BLAKE2b reproduces every published test vector") {
  auto vectors = load_vectors("Noise_XX_25519_ChaChaPoly_BLAKE2b");
  REQUIRE(vectors.size() >= 4);
  for (const auto& v : vectors) play(NoisePattern::xx, v);
}

TEST_CASE("Noise_IK_25519_ChaChaPoly_BLAKE2b reproduces every published test vector") {
  auto vectors = load_vectors("Noise_IK_25519_ChaChaPoly_BLAKE2b");
  REQUIRE(vectors.size() >= 4);
  for (const auto& v : vectors) play(NoisePattern::ik, v);
}

struct Pair {
  IdentityKey client = IdentityKey::generate();
  IdentityKey server = IdentityKey::generate();
};

TEST_CASE("a forged, truncated or corrupted handshake message fails authentication and kills the handshake") {
  Pair keys;
  for (int corrupt : {0, 1, 2}) {
    NoiseHandshake initiator(NoisePattern::xx, NoiseRole::initiator, keys.client, {});
    NoiseHandshake responder(NoisePattern::xx, NoiseRole::responder, keys.server, {});
    auto m0 = initiator.write_message({});
    REQUIRE(responder.read_message(*m0));
    auto m1 = responder.write_message({});
    REQUIRE(m1);
    std::vector<uint8_t> bad = *m1;
    if (corrupt == 0) bad[40] ^= 1;                // inside the encrypted static key
    if (corrupt == 1) bad.resize(bad.size() - 1);  // truncated tag
    if (corrupt == 2) bad.resize(20);              // shorter than the ephemeral key
    auto read = initiator.read_message(bad);
    REQUIRE_FALSE(read);
    CHECK((read.error() == NoiseError::decrypt_failed || read.error() == NoiseError::truncated));
    // Dead: even the genuine message is refused now.
    CHECK_FALSE(initiator.read_message(*m1));
    CHECK_FALSE(initiator.write_message({}));
  }
}

TEST_CASE("IK with the wrong responder key fails at the responder") {
  Pair keys;
  auto impostor = IdentityKey::generate();
  NoiseHandshake initiator(NoisePattern::ik, NoiseRole::initiator, keys.client, {}, impostor.public_key());
  NoiseHandshake responder(NoisePattern::ik, NoiseRole::responder, keys.server, {});
  auto m0 = initiator.write_message({});
  REQUIRE(m0);
  auto read = responder.read_message(*m0);
  REQUIRE_FALSE(read);
  CHECK(read.error() == NoiseError::decrypt_failed);
}

TEST_CASE("different prologues never complete a handshake") {
  Pair keys;
  const uint8_t a[] = {'v', '1'}, b[] = {'v', '2'};
  NoiseHandshake initiator(NoisePattern::xx, NoiseRole::initiator, keys.client, a);
  NoiseHandshake responder(NoisePattern::xx, NoiseRole::responder, keys.server, b);
  auto m0 = initiator.write_message({});
  REQUIRE(responder.read_message(*m0));  // message 0 carries no MAC yet
  auto m1 = responder.write_message({});
  CHECK_FALSE(initiator.read_message(*m1));
}

TEST_CASE("transport messages: replayed, reordered or forged ones fail, and nothing changes") {
  Pair keys;
  NoiseHandshake initiator(NoisePattern::xx, NoiseRole::initiator, keys.client, {});
  NoiseHandshake responder(NoisePattern::xx, NoiseRole::responder, keys.server, {});
  REQUIRE(responder.read_message(*initiator.write_message({})));
  REQUIRE(initiator.read_message(*responder.write_message({})));
  REQUIRE(responder.read_message(*initiator.write_message({})));
  auto a = initiator.split();
  auto b = responder.split();
  const uint8_t text1[] = {'o', 'n', 'e'}, text2[] = {'t', 'w', 'o'};
  std::vector<uint8_t> c1, c2, out;
  REQUIRE(a.send.encrypt({}, text1, c1));
  REQUIRE(a.send.encrypt({}, text2, c2));
  CHECK_FALSE(b.receive.decrypt({}, c2, out));  // out of order
  CHECK(b.receive.nonce() == 0);
  REQUIRE(b.receive.decrypt({}, c1, out));
  CHECK_FALSE(b.receive.decrypt({}, c1, out));  // replay
  auto forged = c2;
  forged.back() ^= 0x80;
  CHECK_FALSE(b.receive.decrypt({}, forged, out));
  REQUIRE(b.receive.decrypt({}, c2, out));
  CHECK(out == std::vector<uint8_t>{'o', 'n', 'e', 't', 'w', 'o'});
}

TEST_CASE("writing out of turn or after the end is refused") {
  Pair keys;
  NoiseHandshake responder(NoisePattern::xx, NoiseRole::responder, keys.server, {});
  auto early = responder.write_message({});
  REQUIRE_FALSE(early);
  CHECK(early.error() == NoiseError::wrong_turn);
  CHECK(std::string(noise_error_name(NoiseError::decrypt_failed)).size() > 0);
}

}  // namespace
