// LwipLab: several hosts' addresses in this process's one lwIP stack, for tests that move
// connections between addresses against the real lwIP. One Node holds a client address C
// and two server addresses A and B on three fake links; run() carries every packet to the
// link that owns its destination. A listener on lab_port hands accepted pcbs to the test.
// With `offloads` the links behave like TUN devices with TSO (tun/tun_link.hpp): lwIP
// hands them multi-MSS TCP segments with only a zero checksum, and run() completes the
// checksum and cuts multi-MSS segments into MSS-sized packets as the kernel would (GSO),
// so receivers acknowledge parts of a segment as they do on a real path.
// Loop thread only (the test's own thread).
#pragma once

#include <doctest/doctest.h>
#include <uv.h>

#include <algorithm>
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
#include "stack/wire/checksum.hpp"
#include "stack/wire/virtio_net_header.hpp"
#include "support/fake_link.hpp"

namespace roam::testing {

inline constexpr uint16_t lab_port = 7000;

inline std::vector<uint8_t> pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> out(size);
  std::mt19937 random(seed);
  for (auto& b : out) b = static_cast<uint8_t>(random());
  return out;
}

// Sets the process-wide buffer modes (TcpConnection::set_*_autotune) for the connections
// a test creates, and puts them back.
struct BufferAutotune {
  BufferAutotune(bool send, bool receive)
      : send_before(TcpConnection::send_buffer_autotune()), receive_before(TcpConnection::receive_buffer_autotune()) {
    TcpConnection::set_send_buffer_autotune(send);
    TcpConnection::set_receive_buffer_autotune(receive);
  }
  ~BufferAutotune() {
    TcpConnection::set_send_buffer_autotune(send_before);
    TcpConnection::set_receive_buffer_autotune(receive_before);
  }
  BufferAutotune(const BufferAutotune&) = delete;
  BufferAutotune& operator=(const BufferAutotune&) = delete;
  bool send_before;
  bool receive_before;
};

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
    append_pbuf(received, *data);
    c.consumed(data->tot_len);
  }
  void on_remote_closed(TcpConnection&) override { remote_closed = true; }
  void on_sent(TcpConnection&, size_t) override { pump(); }
  void on_error(TcpConnection&, err_t) override { failed = true; }
};

class LwipLab {
 public:
  // family 4 or 6. `on_accept` receives each pcb accepted on lab_port at A or B.
  LwipLab(int family, TcpListener::AcceptFn on_accept, LinkOffloads offloads = {}) : offloads_(offloads) {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &keep_alive_);
    uv_timer_start(
        &keep_alive_, [](uv_timer_t*) {}, 1000, 1000);
    node = std::make_unique<Node>(&loop_);
    const char* v4[] = {"198.18.11.2", "198.18.12.2", "198.18.13.2"};
    const char* v6[] = {"2001:db8:11::2", "2001:db8:12::2", "2001:db8:13::2"};
    for (int i = 0; i < 3; ++i) {
      auto fake = std::make_unique<FakeLink>(1500, offloads);
      links_.push_back(fake.get());
      InterfaceConfig config;
      config.address4 = *IpAddress::parse(v4[i]);
      config.prefix4 = 24;
      if (family == 6) config.address6 = *IpAddress::parse(v6[i]);
      addresses_.push_back(*IpAddress::parse(family == 6 ? v6[i] : v4[i]));
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

  const IpAddress& c() const { return addresses_[0]; }
  const IpAddress& a() const { return addresses_[1]; }
  const IpAddress& b() const { return addresses_[2]; }

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
        auto sent = std::move(from->sent);
        auto sent_mss = std::move(from->sent_mss);
        from->sent.clear();
        from->sent_mss.clear();
        std::vector<std::vector<uint8_t>> packets;
        for (size_t i = 0; i < sent.size(); ++i) {
          largest_packet = std::max(largest_packet, sent[i].size());
          if (sent_mss[i] != 0) {
            for (auto& piece : gso_segment(sent[i], sent_mss[i])) packets.push_back(std::move(piece));
          } else {
            packets.push_back(std::move(sent[i]));
          }
        }
        for (auto& packet : packets) {
          moved = true;
          if (offloads_.tcp_checksum) complete_offloaded_checksum(packet);
          if (is_rst(packet)) ++rst_seen;
          if (lose && lose(packet)) continue;
          if (translate) translate(packet);
          auto destination = IpAddress::destination_of(packet);
          REQUIRE(destination);
          for (size_t i = 0; i < links_.size(); ++i)
            if (addresses_[i] == *destination) links_[i]->inject(packet);
        }
      }
      if (!moved) uv_run(&loop_, UV_RUN_ONCE);  // let lwIP's timers run
    }
  }

  // Delivers a packet of the test's own to the host at `to` (c(), a() or b()), as if it had
  // arrived on that host's link: what an attacker on the path can do.
  void inject(const IpAddress& to, std::span<const uint8_t> packet) {
    for (size_t i = 0; i < links_.size(); ++i)
      if (addresses_[i] == to) links_[i]->inject(packet);
  }
  // Packets each host has sent and run() has not yet carried.
  size_t pending_from(const IpAddress& host) const {
    for (size_t i = 0; i < links_.size(); ++i)
      if (addresses_[i] == host) return links_[i]->sent.size();
    return 0;
  }

  // What the kernel does for a packet written with NEEDS_CSUM: put the pseudo-header sum
  // in the checksum field, then sum from the TCP header on.
  static void complete_offloaded_checksum(std::vector<uint8_t>& packet) {
    auto plan = wire::plan_offload(packet, 0xffff);
    REQUIRE(plan);
    if (!plan->partial_checksum) return;
    packet[plan->checksum_at] = static_cast<uint8_t>(*plan->partial_checksum >> 8);
    packet[plan->checksum_at + 1] = static_cast<uint8_t>(*plan->partial_checksum);
    REQUIRE(wire::complete_checksum(plan->header, packet));
  }

  // The kernel's TCP GSO (tcp_gso_segment): same headers, consecutive sequence numbers,
  // FIN and PSH only on the last piece; checksums are completed on delivery.
  static std::vector<std::vector<uint8_t>> gso_segment(const std::vector<uint8_t>& packet, uint16_t mss) {
    const bool v4 = (packet[0] >> 4) == 4;
    const size_t ip = v4 ? static_cast<size_t>(packet[0] & 0x0F) * 4 : 40;
    const size_t header = ip + static_cast<size_t>(packet[ip + 12] >> 4) * 4;
    const size_t payload = packet.size() - header;
    const uint32_t seq = (uint32_t{packet[ip + 4]} << 24) | (uint32_t{packet[ip + 5]} << 16) |
                         (uint32_t{packet[ip + 6]} << 8) | packet[ip + 7];
    std::vector<std::vector<uint8_t>> out;
    for (size_t offset = 0; offset < payload; offset += mss) {
      const size_t n = std::min<size_t>(mss, payload - offset);
      std::vector<uint8_t> piece(packet.begin(), packet.begin() + static_cast<std::ptrdiff_t>(header));
      piece.insert(piece.end(), packet.begin() + static_cast<std::ptrdiff_t>(header + offset),
                   packet.begin() + static_cast<std::ptrdiff_t>(header + offset + n));
      const size_t length = v4 ? piece.size() : piece.size() - 40;
      piece[v4 ? 2 : 4] = static_cast<uint8_t>(length >> 8);
      piece[v4 ? 3 : 5] = static_cast<uint8_t>(length);
      if (v4) {
        piece[10] = piece[11] = 0;
        const uint16_t sum = wire::internet_checksum(std::span(piece).first(ip));
        piece[10] = static_cast<uint8_t>(sum >> 8);
        piece[11] = static_cast<uint8_t>(sum);
      }
      const uint32_t piece_seq = seq + static_cast<uint32_t>(offset);
      for (int b = 0; b < 4; ++b)
        piece[ip + 4 + static_cast<size_t>(b)] = static_cast<uint8_t>(piece_seq >> (24 - 8 * b));
      if (offset + n < payload) piece[ip + 13] &= static_cast<uint8_t>(~0x09);  // FIN, PSH
      out.push_back(std::move(piece));
    }
    return out;
  }

  std::vector<uint16_t> segmented_mss() const {
    std::vector<uint16_t> out;
    for (const FakeLink* link : links_) out.insert(out.end(), link->segmented_mss.begin(), link->segmented_mss.end());
    return out;
  }

  static bool is_rst(const std::vector<uint8_t>& packet) {
    size_t transport = (packet[0] >> 4) == 4 ? static_cast<size_t>(packet[0] & 0x0F) * 4 : 40;
    uint8_t protocol = (packet[0] >> 4) == 4 ? packet[9] : packet[6];
    return protocol == 6 && packet.size() > transport + 13 && (packet[transport + 13] & 0x04) != 0;
  }

  std::unique_ptr<Node> node;
  LabPeer client;
  size_t rst_seen = 0;
  size_t largest_packet = 0;  // the largest IP packet any link was handed
  // Returns true to drop a packet in flight (loss on the path); none by default.
  std::function<bool(std::span<const uint8_t>)> lose;
  // Rewrites a packet in flight (a NAT on the path), after `lose`; none by default.
  std::function<void(std::vector<uint8_t>&)> translate;

 private:
  LinkOffloads offloads_;
  uv_loop_t loop_{};
  uv_timer_t keep_alive_{};  // fake links hold no handle: without one, uv_run runs nothing
  std::vector<FakeLink*> links_;
  std::vector<IpAddress> addresses_;
  std::unique_ptr<TcpListener> listener_;
};

// The usual lab: the client end and the server end (accepted at A) are both LabPeers.
struct PeerLab : LwipLab {
  LabPeer server;

  explicit PeerLab(int family = 4, LinkOffloads offloads = {})
      : LwipLab(
            family,
            [this](tcp_pcb* pcb) {
              server.connection = std::make_unique<TcpConnection>(pcb, &server);
              return true;
            },
            offloads) {}
  ~PeerLab() { server.connection.reset(); }
  void connect() {
    LwipLab::connect([this] { return server.connection != nullptr; });
  }
};

}  // namespace roam::testing
