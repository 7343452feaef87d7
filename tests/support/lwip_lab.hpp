// LwipLab: several hosts' addresses in this process's one lwIP stack, for tests that move
// connections between addresses against the real lwIP. One Node holds a client address C
// and two server addresses A and B on three fake links; run() carries every packet to the
// link that owns its destination. A listener on lab_port hands accepted pcbs to the test.
// Loop thread only (the test's own thread).
#pragma once

#include <doctest/doctest.h>
#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <span>
#include <string_view>
#include <vector>

#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"
#include "stack/tcp_listener.hpp"
#include "support/fake_link.hpp"

namespace roam::testing {

inline constexpr uint16_t lab_port = 7000;

inline std::vector<uint8_t> pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> out(size);
  std::mt19937 random(seed);
  for (auto& b : out) b = static_cast<uint8_t>(random());
  return out;
}

// One end of a test connection: sends `to_send`, keeps everything it receives.
struct LabPeer final : TcpConnection::Handler {
  std::unique_ptr<TcpConnection> connection;
  std::vector<uint8_t> to_send;
  size_t sent_offset = 0;
  std::vector<uint8_t> received;
  bool connected = false;
  bool remote_closed = false;
  bool failed = false;

  void pump() {
    if (!connection || !connection->alive()) return;
    if (sent_offset < to_send.size())
      sent_offset += connection->write({to_send.data() + sent_offset, to_send.size() - sent_offset});
    connection->flush();
  }
  void send(std::span<const uint8_t> bytes) {
    to_send.insert(to_send.end(), bytes.begin(), bytes.end());
    pump();
  }
  void send(std::string_view text) { send({reinterpret_cast<const uint8_t*>(text.data()), text.size()}); }
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
  void on_remote_closed(TcpConnection&) override { remote_closed = true; }
  void on_sent(TcpConnection&, size_t) override { pump(); }
  void on_error(TcpConnection&, err_t) override { failed = true; }
};

class LwipLab {
 public:
  // family 4 or 6. `on_accept` receives each pcb accepted on lab_port at A or B.
  LwipLab(int family, TcpListener::AcceptFn on_accept) {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &keep_alive_);
    uv_timer_start(
        &keep_alive_, [](uv_timer_t*) {}, 1000, 1000);
    node = std::make_unique<Node>(&loop_);
    const char* v4[] = {"198.18.11.2", "198.18.12.2", "198.18.13.2"};
    const char* v6[] = {"2001:db8:11::2", "2001:db8:12::2", "2001:db8:13::2"};
    for (int i = 0; i < 3; ++i) {
      auto fake = std::make_unique<FakeLink>();
      links_.push_back(fake.get());
      InterfaceConfig config;
      config.address4 = *wire::IpAddress::parse(v4[i]);
      config.prefix4 = 24;
      if (family == 6) config.address6 = *wire::IpAddress::parse(v6[i]);
      addresses_.push_back(*wire::IpAddress::parse(family == 6 ? v6[i] : v4[i]));
      REQUIRE(node->add_interface(std::move(fake), config));
    }
    auto l = TcpListener::listen(lab_port, std::move(on_accept));
    REQUIRE(l);
    listener_ = std::move(l.value());
  }
  ~LwipLab() {
    client.connection.reset();
    listener_.reset();
    uv_close(reinterpret_cast<uv_handle_t*>(&keep_alive_), nullptr);
    node->close();
    uv_run(&loop_, UV_RUN_NOWAIT);
    node.reset();
    uv_run(&loop_, UV_RUN_NOWAIT);
    uv_loop_close(&loop_);
  }
  LwipLab(const LwipLab&) = delete;
  LwipLab& operator=(const LwipLab&) = delete;

  const wire::IpAddress& c() const { return addresses_[0]; }
  const wire::IpAddress& a() const { return addresses_[1]; }
  const wire::IpAddress& b() const { return addresses_[2]; }

  // Connects `client` (bound to C) to A:lab_port and runs until both ends exist.
  void connect(const std::function<bool()>& accepted) {
    auto connection = TcpConnection::connect(a(), lab_port, &client, &c());
    REQUIRE(connection);
    client.connection = std::move(connection.value());
    run([&] { return client.connected && accepted(); });
    REQUIRE(client.connected);
  }

  // Moves packets between links until `done`, for at most `max_rounds` rounds and 60 s
  // (a bound against hangs, not a timed assertion: recovery after loss waits for lwIP's
  // retransmission timers).
  void run(const std::function<bool()>& done, int max_rounds = 1 << 30) {
    uint64_t give_up = uv_now(&loop_) + 60'000;
    for (int round = 0; round < max_rounds && !done(); ++round) {
      uv_update_time(&loop_);
      if (uv_now(&loop_) > give_up) break;
      uv_run(&loop_, UV_RUN_NOWAIT);
      bool moved = false;
      for (FakeLink* from : links_) {
        auto packets = std::move(from->sent);
        from->sent.clear();
        for (auto& packet : packets) {
          moved = true;
          if (is_rst(packet)) ++rst_seen;
          if (lose && lose(packet)) continue;
          auto destination = wire::IpAddress::destination_of(packet);
          REQUIRE(destination);
          for (size_t i = 0; i < links_.size(); ++i)
            if (addresses_[i] == *destination) links_[i]->inject(packet);
        }
      }
      if (!moved) uv_run(&loop_, UV_RUN_ONCE);  // let lwIP's timers run
    }
  }

  static bool is_rst(const std::vector<uint8_t>& packet) {
    size_t transport = (packet[0] >> 4) == 4 ? static_cast<size_t>(packet[0] & 0x0F) * 4 : 40;
    uint8_t protocol = (packet[0] >> 4) == 4 ? packet[9] : packet[6];
    return protocol == 6 && packet.size() > transport + 13 && (packet[transport + 13] & 0x04) != 0;
  }

  std::unique_ptr<Node> node;
  LabPeer client;
  size_t rst_seen = 0;
  // Returns true to drop a packet in flight (loss on the path); none by default.
  std::function<bool(std::span<const uint8_t>)> lose;

 private:
  uv_loop_t loop_{};
  uv_timer_t keep_alive_{};  // fake links hold no handle: without one, uv_run runs nothing
  std::vector<FakeLink*> links_;
  std::vector<wire::IpAddress> addresses_;
  std::unique_ptr<TcpListener> listener_;
};

}  // namespace roam::testing
