// Receive windows sized to the path, against the real lwIP (tests/support/lwip_lab.hpp):
// a server app that does not read lets the client's data in only up to its tuned window
// (all of it with --receive-buffer fixed); once the app reads, the rest arrives byte-exact
// and a close sends FIN, not RST (the withheld window credit went back to lwIP); a moved
// connection keeps the right edge it announced, starts from the window the old host
// allowed, and loses no credit.
#include <doctest/doctest.h>

#include <vector>

#include "stack/migrate/pcb_migration.hpp"
#include "stack/tcp_connection.hpp"
#include "stack/wire/connection_snapshot.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using namespace roam::testing;

constexpr size_t KiB = 1024;

// A server app that keeps what arrives without consuming it until told to.
struct HoldingPeer final : TcpConnection::Handler {
  std::unique_ptr<TcpConnection> connection;
  std::vector<uint8_t> held;  // delivered, not consumed
  std::vector<uint8_t> read;  // consumed
  bool reading = false;
  bool remote_closed = false;
  bool failed = false;

  void on_data(TcpConnection& c, PbufPtr data) override {
    append_pbuf(held, *data);
    if (reading) consume_all(c);
  }
  void consume_all(TcpConnection& c) {
    read.insert(read.end(), held.begin(), held.end());
    size_t n = held.size();
    held.clear();
    c.consumed(n);
  }
  void on_remote_closed(TcpConnection&) override { remote_closed = true; }
  void on_sent(TcpConnection&, size_t) override {}
  void on_error(TcpConnection&, err_t) override { failed = true; }
};

struct HoldingLab : LwipLab {
  HoldingPeer server;
  HoldingLab()
      : LwipLab(4, [this](tcp_pcb* pcb) {
          server.connection = std::make_unique<TcpConnection>(pcb, &server);
          return true;
        }) {}
  ~HoldingLab() { server.connection.reset(); }
  void connect() {
    LwipLab::connect([this] { return server.connection != nullptr; });
  }
  // Runs until nothing moves for a while (the client has sent all the window allows).
  void settle() {
    size_t last = ~size_t{0};
    for (int quiet = 0; quiet < 10;) {
      run([] { return false; }, 4);
      quiet = server.held.size() + server.read.size() == last ? quiet + 1 : 0;
      last = server.held.size() + server.read.size();
    }
  }
};

}  // namespace

TEST_CASE("receive window: an app that does not read holds the tuned window, not TCP_WND") {
  for (bool autotune : {true, false}) {
    CAPTURE(autotune);
    roam::testing::BufferAutotune mode(TcpConnection::send_buffer_autotune(), autotune);
    HoldingLab lab;
    lab.connect();
    auto data = pattern(1024 * KiB, 16);
    lab.client.send(data);
    lab.settle();
    tcp_pcb* pcb = lab.server.connection->pcb();
    if (autotune) {
      CHECK(lab.server.connection->receive_window_limit() == 64 * KiB);
      CHECK(lab.server.held.size() <= 64 * KiB);
      CHECK(lab.server.held.size() >= 60 * KiB);  // the peer filled it (less scaling's rounding)
      // The edge lwIP announced lies no further than the tuned window past the first unread byte.
      CHECK(static_cast<uint32_t>(pcb->rcv_ann_right_edge - (pcb->rcv_nxt - lab.server.held.size())) <= 64 * KiB);
    } else {
      CHECK(lab.server.connection->receive_window_limit() == TCP_WND);
      CHECK(lab.server.held.size() == data.size());
    }
    // The app reads: everything arrives, byte-exact, and a close says FIN, not RST.
    lab.server.reading = true;
    lab.server.consume_all(*lab.server.connection);
    lab.run([&] { return lab.server.read.size() == data.size(); });
    CHECK(lab.server.read == data);
    lab.client.connection->shutdown_write();  // half-close: the client still hears the server's FIN
    lab.run([&] { return lab.server.remote_closed; });
    lab.server.connection->close();
    lab.run([&] { return lab.client.remote_closed; });
    CHECK(lab.client.remote_closed);
    CHECK(lab.rst_seen == 0);
  }
}

TEST_CASE("receive window: a moved connection keeps its announced edge and window, and loses no credit") {
  roam::testing::BufferAutotune mode(TcpConnection::send_buffer_autotune(), true);
  HoldingLab lab;
  lab.connect();
  auto data = pattern(512 * KiB, 17);
  lab.client.send(data);
  lab.settle();
  tcp_pcb* old_pcb = lab.server.connection->pcb();
  std::vector<uint8_t> held = lab.server.held;
  REQUIRE(held.size() >= 60 * KiB);
  migrate::freeze_pcb(old_pcb);
  auto snapshot = migrate::capture_snapshot(old_pcb, held, {});
  REQUIRE_MESSAGE(snapshot, (snapshot ? "" : snapshot.error()));
  // The old host withheld credit: its rcv_wnd is short of TCP_WND by more than the unread bytes.
  CHECK(snapshot->receive.rcv_wnd + held.size() < TCP_WND);
  auto decoded = wire::decode_snapshot(wire::encode_snapshot(*snapshot));
  REQUIRE(decoded);
  auto imported = migrate::import_pcb(*decoded, lab.b());
  REQUIRE_MESSAGE(imported, (imported ? "" : imported.error()));
  migrate::discard_frozen_pcb(lab.server.connection->release());
  // lwIP's own accounting at B: short only by the unread bytes.
  CHECK((*imported)->rcv_wnd == TCP_WND - held.size());

  HoldingPeer moved;
  moved.connection = std::make_unique<TcpConnection>(*imported, &moved);
  tcp_pcb* pcb = moved.connection->pcb();
  // The window it starts with is what A allowed: the unread bytes plus what A announced.
  size_t announced = pcb->rcv_ann_right_edge - pcb->rcv_nxt;
  CHECK(pcb->rcv_ann_right_edge == snapshot->receive.rcv_ann_right_edge);
  CHECK(moved.connection->receive_window_limit() == std::max<size_t>(64 * KiB, held.size() + announced));
  // Open: the window less the unread bytes (here exactly what A announced, as A's window was full).
  CHECK(pcb->rcv_wnd == moved.connection->receive_window_limit() - held.size());
  // The app at B consumes what A's app had not: the window reopens to the tuned size, and
  // the credit it withholds comes back whole when the pcb is let go.
  moved.held = held;
  moved.consume_all(*moved.connection);
  CHECK(pcb->rcv_wnd == moved.connection->receive_window_limit());
  tcp_pcb* released = moved.connection->release();
  CHECK(released->rcv_wnd == TCP_WND);
  migrate::discard_imported_pcb(released);
}
