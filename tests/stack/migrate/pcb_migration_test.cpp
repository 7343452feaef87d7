// Moving a live lwIP connection between addresses, against the real lwIP: one Node holds a
// client address C and two server addresses A and B on three fake links; the test carries
// every packet to the link that owns its destination. The server end moves from A to B
// through a snapshot (encoded and decoded), the client follows, and the byte streams in
// both directions must stay exact. Also: a failed import resumes on the old path, silenced
// flows die without RST, parked flows stay quiet until the client arrives.
#include "stack/migrate/pcb_migration.hpp"

#include <doctest/doctest.h>

#include <random>

#include "lwip/priv/tcp_priv.h"
#include "stack/lwip_address.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"
#include "stack/tcp_listener.hpp"
#include "stack/wire/connection_snapshot.hpp"
#include "support/fake_link.hpp"

namespace {

using namespace roam;
using roam::testing::FakeLink;

std::vector<uint8_t> pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> out(size);
  std::mt19937 random(seed);
  for (auto& b : out) b = static_cast<uint8_t>(random());
  return out;
}

// One end of a test connection: sends `to_send`, keeps everything it receives.
struct Peer final : TcpConnection::Handler {
  std::unique_ptr<TcpConnection> connection;
  std::vector<uint8_t> to_send;
  size_t sent_offset = 0;
  std::vector<uint8_t> received;
  bool connected = false;
  bool failed = false;

  void pump() {
    if (!connection || !connection->alive()) return;
    if (sent_offset < to_send.size())
      sent_offset += connection->write({to_send.data() + sent_offset, to_send.size() - sent_offset});
    connection->flush();
  }
  void on_connected(TcpConnection&) override {
    connected = true;
    pump();
  }
  void on_data(TcpConnection& c, PbufPtr data) override {
    size_t old_size = received.size();
    received.resize(old_size + data->tot_len);
    pbuf_copy_partial(data.get(), received.data() + old_size, data->tot_len, 0);
    c.consumed(data->tot_len);
  }
  void on_remote_closed(TcpConnection&) override {}
  void on_sent(TcpConnection&, size_t) override { pump(); }
  void on_error(TcpConnection&, err_t) override { failed = true; }
};

struct Lab {
  uv_loop_t loop{};
  std::unique_ptr<Node> node;
  std::vector<FakeLink*> links;
  std::vector<wire::IpAddress> addresses;
  std::unique_ptr<TcpListener> listener;
  Peer client;
  Peer server;
  size_t rst_seen = 0;
  size_t delivered = 0;
  // Returns true to drop a packet in flight (loss on the path).
  std::function<bool(std::span<const uint8_t>)> lose = [](std::span<const uint8_t>) { return false; };

  // family 4 or 6; addresses C, A, B.
  uv_timer_t keep_alive{};  // fake links hold no handle: without one, uv_run runs nothing

  explicit Lab(int family) {
    uv_loop_init(&loop);
    uv_timer_init(&loop, &keep_alive);
    uv_timer_start(&keep_alive, [](uv_timer_t*) {}, 1000, 1000);
    node = std::make_unique<Node>(&loop);
    const char* v4[] = {"198.18.11.2", "198.18.12.2", "198.18.13.2"};
    const char* v6[] = {"2001:db8:11::2", "2001:db8:12::2", "2001:db8:13::2"};
    for (int i = 0; i < 3; ++i) {
      auto fake = std::make_unique<FakeLink>();
      links.push_back(fake.get());
      InterfaceConfig config;
      config.address4 = *wire::IpAddress::parse(v4[i]);
      config.prefix4 = 24;
      if (family == 6) config.address6 = *wire::IpAddress::parse(v6[i]);
      addresses.push_back(*wire::IpAddress::parse(family == 6 ? v6[i] : v4[i]));
      REQUIRE(node->add_interface(std::move(fake), config));
    }
    auto l = TcpListener::listen(7000, [this](tcp_pcb* pcb) {
      server.connection = std::make_unique<TcpConnection>(pcb, &server);
      return true;
    });
    REQUIRE(l);
    listener = std::move(l.value());
  }
  ~Lab() {
    client.connection.reset();
    server.connection.reset();
    listener.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&keep_alive), nullptr);
    node->close();
    uv_run(&loop, UV_RUN_NOWAIT);
    node.reset();
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
  }

  const wire::IpAddress& c() const { return addresses[0]; }
  const wire::IpAddress& a() const { return addresses[1]; }
  const wire::IpAddress& b() const { return addresses[2]; }

  // Connects the client (bound to C) to A:7000.
  void connect() {
    auto connection = TcpConnection::connect(a(), 7000, &client, &c());
    REQUIRE(connection);
    client.connection = std::move(connection.value());
    run([&] { return client.connected && server.connection != nullptr; });
    REQUIRE(client.connected);
  }

  // Moves packets between links until `done`, for at most `max_rounds` rounds and 60 s
  // (a bound against hangs, not a timed assertion: recovery after loss waits for lwIP's
  // retransmission timers).
  void run(const std::function<bool()>& done, int max_rounds = 1 << 30) {
    uint64_t give_up = uv_now(&loop) + 60'000;
    for (int round = 0; round < max_rounds && !done(); ++round) {
      uv_update_time(&loop);
      if (uv_now(&loop) > give_up) break;
      uv_run(&loop, UV_RUN_NOWAIT);
      bool moved = false;
      for (FakeLink* from : links) {
        auto packets = std::move(from->sent);
        from->sent.clear();
        for (auto& packet : packets) {
          moved = true;
          if (is_rst(packet)) ++rst_seen;
          if (lose(packet)) continue;
          auto destination = wire::IpAddress::destination_of(packet);
          REQUIRE(destination);
          for (size_t i = 0; i < links.size(); ++i) {
            if (addresses[i] == *destination) {
              ++delivered;
              links[i]->inject(packet);
            }
          }
        }
      }
      if (!moved) {
        // Let lwIP's timers run (retransmissions after loss).
        uv_run(&loop, UV_RUN_ONCE);
      }
    }
  }

  static bool is_rst(const std::vector<uint8_t>& packet) {
    size_t transport = (packet[0] >> 4) == 4 ? static_cast<size_t>(packet[0] & 0x0F) * 4 : 40;
    uint8_t protocol = (packet[0] >> 4) == 4 ? packet[9] : packet[6];
    return protocol == 6 && packet.size() > transport + 13 && (packet[transport + 13] & 0x04) != 0;
  }
};

using migrate::flow_of;

// The client follows: rewrite, and silence the old flow so late packets die quietly.
size_t follow(Lab& lab, migrate::MigrationGuard& guard, const wire::IpAddress& from, const wire::IpAddress& to) {
  auto old_flows = migrate::rewrite_remote(from, 7000, to, 0);
  for (const auto& flow : old_flows) guard.silence(flow);
  (void)lab;
  return old_flows.size();
}

// Moves the server end from A to B the way two hosts would, through the encoded snapshot.
void move_server(Lab& lab, migrate::MigrationGuard& guard) {
  tcp_pcb* old_pcb = lab.server.connection->pcb();
  REQUIRE(migrate::check_movable(old_pcb));
  migrate::freeze_pcb(old_pcb);
  guard.silence(flow_of(old_pcb));
  auto snapshot = migrate::capture_snapshot(old_pcb, {}, {});
  REQUIRE_MESSAGE(snapshot, (snapshot ? "" : snapshot.error()));
  auto decoded = wire::decode_snapshot(wire::encode_snapshot(*snapshot));
  REQUIRE(decoded);
  auto imported = migrate::import_pcb(*decoded, lab.b());
  REQUIRE_MESSAGE(imported, (imported ? "" : imported.error()));
  migrate::discard_frozen_pcb(lab.server.connection->release());
  lab.server.connection = std::make_unique<TcpConnection>(*imported, &lab.server);
  guard.park(flow_of(*imported), *imported);
  CHECK(follow(lab, guard, lab.a(), lab.b()) == 1);
}

void transfer_across_a_move(int family) {
  Lab lab(family);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  lab.server.to_send = pattern(3 << 20, 1);
  lab.client.to_send = pattern(2 << 20, 2);
  lab.server.pump();
  lab.client.pump();
  // Move mid-stream, in both directions at once.
  lab.run([&] { return lab.client.received.size() > (1 << 20) && lab.server.received.size() > (512 << 10); });
  REQUIRE(lab.client.received.size() < lab.server.to_send.size());
  move_server(lab, guard);
  lab.run([&] {
    return lab.client.received.size() == lab.server.to_send.size() &&
           lab.server.received.size() == lab.client.to_send.size();
  });
  INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size(), "; server received ",
       lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(lab.server.received == lab.client.to_send);
  CHECK_FALSE(lab.client.failed);
  CHECK_FALSE(lab.server.failed);
  CHECK(lab.rst_seen == 0);
  CHECK(guard.counters().unparked == 1);
  // The server end now lives at B.
  CHECK(from_lwip(lab.server.connection->pcb()->local_ip) == lab.b());
  CHECK(from_lwip(lab.client.connection->pcb()->remote_ip) == lab.b());
}

TEST_CASE("a connection whose server end moves to another address keeps both byte streams exact (IPv4)") {
  transfer_across_a_move(4);
}

TEST_CASE("a connection whose server end moves to another address keeps both byte streams exact (IPv6)") {
  transfer_across_a_move(6);
}

TEST_CASE("a move survives 5% loss on the path") {
  Lab lab(4);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  std::mt19937 random(7);
  lab.lose = [&random](std::span<const uint8_t>) { return random() % 100 < 5; };
  lab.server.to_send = pattern(1 << 20, 3);
  lab.client.to_send = pattern(512 << 10, 4);
  lab.server.pump();
  lab.client.pump();
  lab.run([&] { return lab.client.received.size() > (300 << 10); });
  move_server(lab, guard);
  lab.run([&] {
    return lab.client.received.size() == lab.server.to_send.size() &&
           lab.server.received.size() == lab.client.to_send.size();
  });
  INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size(), "; server received ",
       lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(lab.server.received == lab.client.to_send);
  CHECK(lab.rst_seen == 0);
}

TEST_CASE("a failed import leaves the connection on its old path, exactly as it was") {
  Lab lab(4);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  lab.server.to_send = pattern(1 << 20, 5);
  lab.server.pump();
  lab.run([&] { return lab.client.received.size() > (256 << 10); });
  tcp_pcb* pcb = lab.server.connection->pcb();
  uint32_t snd_nxt = pcb->snd_nxt, rcv_nxt = pcb->rcv_nxt, lastack = pcb->lastack;
  migrate::freeze_pcb(pcb);
  auto key = flow_of(pcb);
  guard.silence(key);
  auto snapshot = migrate::capture_snapshot(pcb, {}, {});
  REQUIRE(snapshot);
  // The new host cannot take it: its address is of the other family.
  auto imported = migrate::import_pcb(*snapshot, *wire::IpAddress::parse("2001:db8:13::2"));
  REQUIRE_FALSE(imported);
  CHECK(pcb->snd_nxt == snd_nxt);
  CHECK(pcb->rcv_nxt == rcv_nxt);
  CHECK(pcb->lastack == lastack);
  guard.unsilence(key);
  migrate::thaw_pcb(pcb);
  lab.run([&] { return lab.client.received.size() == lab.server.to_send.size(); });
  INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size(), "; server received ",
       lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(lab.rst_seen == 0);
  CHECK(from_lwip(lab.server.connection->pcb()->local_ip) == lab.a());
}

TEST_CASE("while frozen, the old server drops the flow's packets without answering RST") {
  Lab lab(4);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  tcp_pcb* pcb = lab.server.connection->pcb();
  migrate::freeze_pcb(pcb);
  guard.silence(flow_of(pcb));
  lab.client.to_send = pattern(64 << 10, 6);
  lab.client.pump();
  lab.run([&] { return guard.counters().silenced_input_drops >= 3; });
  CHECK(guard.counters().silenced_input_drops >= 3);
  CHECK(lab.rst_seen == 0);
  CHECK(lab.server.received.empty());
  // And it resumes: the client's retransmissions get through once thawed.
  guard.unsilence(flow_of(pcb));
  migrate::thaw_pcb(pcb);
  lab.run([&] { return lab.server.received.size() == lab.client.to_send.size(); });
  INFO("server received ", lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.server.received == lab.client.to_send);
}

TEST_CASE("an imported connection stays silent until the client reaches it on the new path") {
  Lab lab(4);
  migrate::MigrationGuard guard(*lab.node);
  lab.connect();
  lab.server.to_send = pattern(256 << 10, 8);
  lab.server.pump();
  lab.run([&] { return lab.client.received.size() > (64 << 10); });
  tcp_pcb* old_pcb = lab.server.connection->pcb();
  migrate::freeze_pcb(old_pcb);
  guard.silence(flow_of(old_pcb));
  lab.run([] { return false; }, 50);  // what A sent before the freeze arrives
  auto snapshot = migrate::capture_snapshot(old_pcb, {}, {});
  REQUIRE(snapshot);
  auto imported = migrate::import_pcb(*snapshot, lab.b());
  REQUIRE(imported);
  migrate::discard_frozen_pcb(lab.server.connection->release());
  lab.server.connection = std::make_unique<TcpConnection>(*imported, &lab.server);
  guard.park(flow_of(*imported), *imported);
  lab.server.pump();  // the app writes: nothing may leave yet
  size_t before = lab.client.received.size();
  lab.run([] { return false; }, 50);
  CHECK(lab.client.received.size() == before);
  CHECK(guard.counters().parked_output_drops > 0);
  CHECK(lab.rst_seen == 0);
  CHECK(follow(lab, guard, lab.a(), lab.b()) == 1);
  lab.run([&] { return lab.client.received.size() == lab.server.to_send.size(); });
  INFO("client received ", lab.client.received.size(), " of ", lab.server.to_send.size(), "; server received ",
       lab.server.received.size(), " of ", lab.client.to_send.size());
  CHECK(lab.client.received == lab.server.to_send);
  CHECK(guard.counters().unparked == 1);
}

TEST_CASE("rewrite_local rebinds a host's connections to its new address") {
  Lab lab(4);
  lab.connect();
  lab.client.to_send = pattern(128 << 10, 9);
  lab.client.pump();
  lab.run([&] { return lab.server.received.size() > (32 << 10); });
  // The server host's address A becomes B: its pcb is rebound, the client follows.
  migrate::MigrationGuard guard(*lab.node);
  for (const auto& flow : migrate::rewrite_local(lab.a(), lab.b())) guard.silence(flow);
  CHECK(follow(lab, guard, lab.a(), lab.b()) == 1);
  lab.run([&] { return lab.server.received.size() == lab.client.to_send.size(); });
  CHECK(lab.server.received == lab.client.to_send);
  CHECK(lab.rst_seen == 0);
}

TEST_CASE("connections that are not established cannot be captured") {
  Lab lab(4);
  tcp_pcb* pcb = tcp_new();
  REQUIRE(pcb != nullptr);
  CHECK_FALSE(migrate::check_movable(pcb));
  CHECK_FALSE(migrate::capture_snapshot(pcb, {}, {}));
  tcp_close(pcb);
}

}  // namespace
