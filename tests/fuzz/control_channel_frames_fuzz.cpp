// libFuzzer target for the control channel's stream (stack/control/channel): what a
// server's responder reads from a client before and after the handshake. Two channels
// complete a real Noise XX handshake; then the input is split at a data-dependent
// point and fed (a) to a fresh responder, as handshake bytes, and (b) to the established
// responder, as transport frames. Nothing may crash, and no input may ever come out as a
// message: the fuzzer does not know the session keys, so every frame must fail to
// authenticate (or be cut short).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "crypto/identity_key.hpp"
#include "stack/control/channel.hpp"

namespace {

using namespace roam;

void check(bool condition) {
  if (!condition) __builtin_trap();
}

struct Pair {
  crypto::IdentityKey client_key = crypto::IdentityKey::generate();
  crypto::IdentityKey server_key = crypto::IdentityKey::generate();
  control::ControlChannel client{crypto::NoisePattern::xx, crypto::NoiseRole::initiator, client_key,
                                 control::Hello{control::protocol_version, "client", 0, {}}};
  control::ControlChannel server{crypto::NoisePattern::xx, crypto::NoiseRole::responder, server_key,
                                 control::Hello{control::protocol_version, "server", 0, {}}};
  Pair() {
    std::vector<uint8_t> to_server = client.start(), to_client;
    for (int round = 0; round < 4 && !(client.established() && server.established()); ++round) {
      server.feed(to_server);
      to_server.clear();
      while (true) {
        auto e = server.next(to_client);
        if (!e || !e.value()) break;
      }
      client.feed(to_client);
      to_client.clear();
      while (true) {
        auto e = client.next(to_server);
        if (!e || !e.value()) break;
      }
    }
    check(client.established() && server.established());
  }
};

void drain(control::ControlChannel& channel) {
  std::vector<uint8_t> replies;
  for (int i = 0; i < 100000 && !channel.failed(); ++i) {
    auto event = channel.next(replies);
    if (event && !event.value()) return;
    if (event && event.value() && !event.value()->established) check(false);  // a message from nowhere
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A fresh handshake per input (a broken stream must not carry over); its keys are
  // secret from the input.
  auto pair = std::make_unique<Pair>();
  std::span<const uint8_t> bytes(data, size);
  size_t cut = bytes.empty() ? 0 : bytes[0] % (bytes.size() + 1);

  static crypto::IdentityKey responder_key = crypto::IdentityKey::generate();
  control::ControlChannel fresh(crypto::NoisePattern::xx, crypto::NoiseRole::responder, responder_key,
                                control::Hello{control::protocol_version, "server", 0, {}});
  fresh.feed(bytes.first(cut));
  drain(fresh);
  fresh.feed(bytes.subspan(cut));
  drain(fresh);
  check(!fresh.established() || fresh.counters().messages_in == 0);

  uint64_t before = pair->server.counters().messages_in;
  pair->server.feed(bytes);
  drain(pair->server);
  check(pair->server.counters().messages_in == before);
  return 0;
}
