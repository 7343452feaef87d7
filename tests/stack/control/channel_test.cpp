// ControlChannel: a real Noise XX handshake between two channels, then messages both ways;
// every kind of bad frame (forged, corrupted, truncated, replayed, re-ordered, from a
// session under another key) is dropped and counted and changes nothing; fatal cases
// (broken framing, wrong responder key under IK, a non-HELLO payload) fail the channel.
#include "stack/control/channel.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

using namespace roam;
using control::ChannelError;
using control::ControlChannel;

struct Pair {
  crypto::IdentityKey client_key = crypto::IdentityKey::generate();
  crypto::IdentityKey server_key = crypto::IdentityKey::generate();
  ControlChannel client;
  ControlChannel server;
  std::vector<control::Message> to_client_messages, to_server_messages;

  explicit Pair(crypto::NoisePattern pattern = crypto::NoisePattern::xx,
                std::optional<crypto::PublicKey> server_static = std::nullopt)
      : client(pattern, crypto::NoiseRole::initiator, client_key,
               control::Hello{control::protocol_version, "client", 0, {}},
               pattern == crypto::NoisePattern::ik ? (server_static ? server_static : server_key.public_key())
                                                   : std::nullopt),
        server(pattern, crypto::NoiseRole::responder, server_key,
               control::Hello{control::protocol_version, "server", 7, {}}) {}

  // Feeds `bytes` to `to` and collects what it says back and the messages it yields;
  // returns the errors it reported.
  static std::vector<ChannelError> deliver(ControlChannel& to, const std::vector<uint8_t>& bytes,
                                           std::vector<uint8_t>& replies, std::vector<control::Message>& messages) {
    std::vector<ChannelError> errors;
    to.feed(bytes);
    while (true) {
      auto event = to.next(replies);
      if (!event) {
        errors.push_back(event.error());
        if (to.failed()) break;
        continue;
      }
      if (!event.value()) break;
      if (!event.value()->established) messages.push_back(event.value()->message);
    }
    return errors;
  }

  bool handshake() {
    std::vector<uint8_t> to_server = client.start(), to_client;
    for (int round = 0; round < 3; ++round) {
      if (!deliver(server, to_server, to_client, to_server_messages).empty()) return false;
      to_server.clear();
      if (!deliver(client, to_client, to_server, to_client_messages).empty()) return false;
      to_client.clear();
      if (client.established() && server.established() && to_server.empty()) return true;
    }
    return client.established() && server.established();
  }
};

control::AddressChange sample_acm(uint64_t sequence) {
  control::AddressChange acm;
  acm.sequence = sequence;
  acm.nonce[0] = static_cast<uint8_t>(sequence);
  acm.issued_at_ms = 1'800'000'000'000;
  acm.old_address = *IpAddress::parse("198.18.12.2");
  acm.new_address = *IpAddress::parse("198.18.13.2");
  acm.old_port = acm.new_port = 7000;
  acm.connection_ids = {sequence + 100};
  return acm;
}

TEST_CASE("XX: both ends learn each other's key and HELLO, then messages flow both ways") {
  Pair p;
  REQUIRE(p.handshake());
  CHECK(p.client.remote_static() == p.server_key.public_key());
  CHECK(p.server.remote_static() == p.client_key.public_key());
  CHECK(p.client.peer_hello().host_id == "server");
  CHECK(p.client.peer_hello().capabilities == 7);
  CHECK(p.server.peer_hello().host_id == "client");

  std::vector<uint8_t> replies;
  auto acm = p.server.seal(sample_acm(1));
  REQUIRE(acm);
  CHECK(Pair::deliver(p.client, acm.value(), replies, p.to_client_messages).empty());
  REQUIRE(p.to_client_messages.size() == 1);
  CHECK(std::get<control::AddressChange>(p.to_client_messages[0]) == sample_acm(1));
  auto ack = p.client.seal(control::Ack{1, control::AckStatus::applied});
  REQUIRE(ack);
  CHECK(Pair::deliver(p.server, ack.value(), replies, p.to_server_messages).empty());
  REQUIRE(p.to_server_messages.size() == 1);
  CHECK(std::get<control::Ack>(p.to_server_messages[0]).sequence == 1);
  CHECK(replies.empty());
}

TEST_CASE("IK: one round trip with the responder's known key; a wrong key fails the handshake") {
  Pair good(crypto::NoisePattern::ik);
  REQUIRE(good.handshake());
  CHECK(good.server.remote_static() == good.client_key.public_key());

  Pair wrong(crypto::NoisePattern::ik, crypto::IdentityKey::generate().public_key());
  CHECK_FALSE(wrong.handshake());
  CHECK(wrong.server.failed());
  CHECK_FALSE(wrong.server.established());
  auto sealed = wrong.server.seal(sample_acm(1));
  REQUIRE_FALSE(sealed);
  CHECK(sealed.error() == ChannelError::not_established);
}

TEST_CASE("a frame split at every byte boundary still arrives once") {
  Pair p;
  REQUIRE(p.handshake());
  auto acm = p.server.seal(sample_acm(5)).value();
  for (size_t cut = 0; cut <= acm.size(); ++cut) {
    Pair q;
    REQUIRE(q.handshake());
    auto frame = q.server.seal(sample_acm(5)).value();
    std::vector<uint8_t> replies;
    std::vector<uint8_t> first(frame.begin(), frame.begin() + static_cast<long>(cut));
    std::vector<uint8_t> rest(frame.begin() + static_cast<long>(cut), frame.end());
    CHECK(Pair::deliver(q.client, first, replies, q.to_client_messages).empty());
    CHECK(Pair::deliver(q.client, rest, replies, q.to_client_messages).empty());
    CHECK(q.to_client_messages.size() == 1);
  }
}

TEST_CASE("forged, corrupted and truncated frames are dropped and counted; the channel goes on") {
  Pair p;
  REQUIRE(p.handshake());
  std::vector<uint8_t> replies;
  auto genuine = p.server.seal(sample_acm(1)).value();
  // Every single-bit flip after the length prefix: counter, ciphertext or tag.
  for (size_t at = control::channel_length_bytes; at < genuine.size(); ++at) {
    auto corrupt = genuine;
    corrupt[at] ^= 0x01;
    auto errors = Pair::deliver(p.client, corrupt, replies, p.to_client_messages);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == ChannelError::forged);
  }
  // Random bytes of the right shape, and a body shorter than counter + tag.
  std::vector<uint8_t> junk = {0, 30};
  for (int i = 0; i < 30; ++i) junk.push_back(static_cast<uint8_t>(i * 37));
  CHECK(Pair::deliver(p.client, junk, replies, p.to_client_messages) == std::vector{ChannelError::forged});
  std::vector<uint8_t> short_body = {0, 5, 1, 2, 3, 4, 5};
  CHECK(Pair::deliver(p.client, short_body, replies, p.to_client_messages) == std::vector{ChannelError::forged});
  CHECK(p.to_client_messages.empty());
  CHECK(p.client.counters().forged == genuine.size() - control::channel_length_bytes + 2);
  CHECK_FALSE(p.client.failed());
  // The genuine frame still works after all of that.
  CHECK(Pair::deliver(p.client, genuine, replies, p.to_client_messages).empty());
  CHECK(p.to_client_messages.size() == 1);
  CHECK(replies.empty());
}

TEST_CASE("a replayed frame is refused; re-ordered frames inside the window are accepted once each") {
  Pair p;
  REQUIRE(p.handshake());
  std::vector<uint8_t> replies;
  auto first = p.server.seal(sample_acm(1)).value();
  auto second = p.server.seal(sample_acm(2)).value();
  auto third = p.server.seal(sample_acm(3)).value();
  CHECK(Pair::deliver(p.client, third, replies, p.to_client_messages).empty());
  CHECK(Pair::deliver(p.client, first, replies, p.to_client_messages).empty());
  CHECK(Pair::deliver(p.client, third, replies, p.to_client_messages) == std::vector{ChannelError::replayed});
  CHECK(Pair::deliver(p.client, first, replies, p.to_client_messages) == std::vector{ChannelError::replayed});
  CHECK(Pair::deliver(p.client, second, replies, p.to_client_messages).empty());
  CHECK(Pair::deliver(p.client, second, replies, p.to_client_messages) == std::vector{ChannelError::replayed});
  CHECK(p.to_client_messages.size() == 3);
  CHECK(p.client.counters().replayed == 3);
  // (Ordering of ACMs themselves is the AcmFilter's job: see acm_filter_test.cpp.)
}

TEST_CASE("a frame too old for the replay window is refused") {
  Pair p;
  REQUIRE(p.handshake());
  std::vector<uint8_t> replies;
  auto oldest = p.server.seal(sample_acm(1)).value();
  std::vector<uint8_t> latest;
  for (uint64_t i = 0; i < crypto::ReplayWindow::window_bits + 1; ++i) latest = p.server.seal(control::Ack{i}).value();
  CHECK(Pair::deliver(p.client, latest, replies, p.to_client_messages).empty());
  CHECK(Pair::deliver(p.client, oldest, replies, p.to_client_messages) == std::vector{ChannelError::replayed});
}

TEST_CASE("frames from another session (same peers, new handshake) do not authenticate") {
  Pair a;
  REQUIRE(a.handshake());
  Pair b;
  REQUIRE(b.handshake());
  std::vector<uint8_t> replies;
  auto from_a = a.server.seal(sample_acm(1)).value();
  CHECK(Pair::deliver(b.client, from_a, replies, b.to_client_messages) == std::vector{ChannelError::forged});
  CHECK(b.to_client_messages.empty());
}

TEST_CASE("an authenticated frame that is not a message is dropped as bad_message") {
  Pair p;
  REQUIRE(p.handshake());
  // Seal bytes that decode to nothing: an unknown type, by sealing a valid ACK and then
  // checking that the decoder's refusal path is counted. Built through the channel API:
  // an ERROR message round-trips, so use an ACK with a status the decoder refuses.
  control::Ack bad{1, static_cast<control::AckStatus>(9)};
  auto sealed = p.server.seal(bad).value();
  std::vector<uint8_t> replies;
  CHECK(Pair::deliver(p.client, sealed, replies, p.to_client_messages) == std::vector{ChannelError::bad_message});
  CHECK(p.client.counters().bad_messages == 1);
  CHECK_FALSE(p.client.failed());
}

TEST_CASE("fatal: a zero-length frame, a corrupted handshake, a handshake payload that is not HELLO") {
  {
    Pair p;
    REQUIRE(p.handshake());
    std::vector<uint8_t> replies;
    CHECK(Pair::deliver(p.client, {0, 0}, replies, p.to_client_messages) == std::vector{ChannelError::bad_length});
    CHECK(p.client.failed());
  }
  {
    Pair p;
    auto first = p.client.start();
    std::vector<uint8_t> to_client;
    std::vector<control::Message> none;
    CHECK(Pair::deliver(p.server, first, to_client, none).empty());
    to_client[10] ^= 0x40;  // inside the responder's encrypted static key
    std::vector<uint8_t> to_server;
    CHECK(Pair::deliver(p.client, to_client, to_server, none) == std::vector{ChannelError::handshake_failed});
    CHECK(p.client.failed());
    CHECK(to_server.empty());
  }
  {
    // A responder whose HELLO is replaced by another message: the initiator refuses it.
    crypto::IdentityKey client_key = crypto::IdentityKey::generate(), server_key = crypto::IdentityKey::generate();
    ControlChannel client(crypto::NoisePattern::xx, crypto::NoiseRole::initiator, client_key,
                          control::Hello{control::protocol_version, "client", 0, {}});
    crypto::NoiseHandshake rogue(crypto::NoisePattern::xx, crypto::NoiseRole::responder, server_key,
                                 std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(control::channel_prologue),
                                                          sizeof(control::channel_prologue) - 1));
    auto first = client.start();
    REQUIRE(rogue.read_message(std::span(first).subspan(2)));
    auto payload = control::encode_message(control::Ack{1, control::AckStatus::applied});
    auto second = rogue.write_message(payload).value();
    std::vector<uint8_t> framed = {static_cast<uint8_t>(second.size() >> 8), static_cast<uint8_t>(second.size())};
    framed.insert(framed.end(), second.begin(), second.end());
    std::vector<uint8_t> replies;
    std::vector<control::Message> none;
    CHECK(Pair::deliver(client, framed, replies, none) == std::vector{ChannelError::bad_hello});
    CHECK(client.failed());
  }
}

}  // namespace
