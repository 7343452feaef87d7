// The files app against the real lwIP (tests/support/lwip_lab.hpp): downloads from an
// offset, refusals that send FIN and no bytes, and sessions that move to another address
// mid-download or mid-request and still deliver the file byte-exact.
#include "apps/files_app.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "apps/files_state.hpp"
#include "apps/builtin_sessions.hpp"
#include "stack/migrate/migration_guard.hpp"
#include "support/lwip_lab.hpp"
#include "support/session_mover.hpp"

namespace {

using namespace roam;
using roam::testing::LwipLab;
using roam::testing::pattern;

// A mkdtemp directory, removed with everything in it even when the test fails.
struct TempDir {
  std::string path;
  TempDir() {
    std::string name = (std::filesystem::temp_directory_path() / "roam_files_test.XXXXXX").string();
    REQUIRE(::mkdtemp(name.data()) != nullptr);
    path = name;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  void write(const std::string& name, const std::vector<uint8_t>& bytes) const {
    std::ofstream out(path + "/" + name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
  }
};

// A files server at A (and, after a move, at B) with one client at C.
struct FilesLab {
  TempDir dir;
  LwipLab lab{4, [this](tcp_pcb* pcb) {
                session = std::make_unique<FilesSession>(*lab.node, dir.path, pcb, on_finished());
                return true;
              }};
  migrate::MigrationGuard guard{*lab.node};
  std::unique_ptr<MovableSession> session;
  int finished = 0;

  MovableSession::FinishedFn on_finished() {
    return [this](MovableSession*) { ++finished; };
  }
  SessionContext context() { return SessionContext{lab.node.get(), dir.path}; }
  void connect() {
    lab.connect([this] { return session != nullptr; });
  }
  testing::MovedSession move() {
    auto moved = testing::move_session(lab, guard, session, context(), on_finished());
    session = std::move(moved.session);
    return moved;
  }
  // Runs until the server's FIN reached the client.
  void download() {
    lab.run([this] { return lab.client.remote_closed || lab.client.failed; });
  }
};

std::vector<uint8_t> tail(const std::vector<uint8_t>& bytes, size_t from) {
  return {bytes.begin() + static_cast<std::ptrdiff_t>(from), bytes.end()};
}

TEST_CASE("a files session sends the file from the requested offset, then FIN, and finishes") {
  FilesLab f;
  auto file = pattern(1 << 20, 11);
  f.dir.write("big.bin", file);
  f.connect();
  f.lab.client.send("big.bin 1000\n");
  f.download();
  CHECK(f.lab.client.received == tail(file, 1000));
  CHECK(f.lab.client.remote_closed);
  f.lab.run([&] { return f.finished == 1; });
  CHECK(f.finished == 1);
  CHECK(f.lab.rst_seen == 0);
}

TEST_CASE("a request without an offset gets the whole file; bytes after the line are ignored") {
  FilesLab f;
  auto file = pattern(100'000, 12);
  f.dir.write("small.txt", file);
  f.connect();
  f.lab.client.send("small.txt\nsome trailing bytes the server ignores");
  f.download();
  CHECK(f.lab.client.received == file);
  CHECK(f.lab.rst_seen == 0);
}

TEST_CASE("an offset equal to the file size sends no bytes and FIN") {
  FilesLab f;
  f.dir.write("f", pattern(10, 13));
  f.connect();
  f.lab.client.send("f 10\n");
  f.download();
  CHECK(f.lab.client.remote_closed);
  CHECK(f.lab.client.received.empty());
}

TEST_CASE("bad requests are answered with FIN and no bytes") {
  std::vector<std::string> requests = {
      "missing.bin\n",               // no such file
      "../big.bin\n",                // leaves the root
      "big.bin 1048577\n",           // offset beyond the size
      "big.bin x\n",                 // bad offset
      "sub\n",                       // a directory
      "link\n",                      // a symlink to a real file
      "fifo\n",                      // would block open() without O_NONBLOCK
      std::string(300, 'a'),         // too long, no newline
      std::string(256, 'a') + "\n",  // 257 bytes with the newline
      "big.b",                       // the client closes before the line ends
  };
  for (const auto& request : requests) {
    INFO("request: ", request.substr(0, 40));
    FilesLab f;
    f.dir.write("big.bin", pattern(1 << 20, 14));
    std::filesystem::create_directory(f.dir.path + "/sub");
    std::filesystem::create_symlink(f.dir.path + "/big.bin", f.dir.path + "/link");
    REQUIRE(::mkfifo((f.dir.path + "/fifo").c_str(), 0600) == 0);
    f.connect();
    f.lab.client.send(request);
    if (request == "big.b") {
      f.lab.run([&] { return f.lab.client.to_send.size() == f.lab.client.sent_offset; });
      f.lab.client.connection->shutdown_write();
    }
    f.download();
    CHECK(f.lab.client.remote_closed);
    CHECK(f.lab.client.received.empty());
    CHECK_FALSE(f.lab.client.failed);
    f.lab.run([&] { return f.finished == 1; });
    CHECK(f.finished == 1);
  }
}

TEST_CASE("a files session moved mid-download delivers the whole file exactly") {
  FilesLab f;
  // Larger than lwIP's 4 MiB send buffer, so the move happens with file bytes not yet queued.
  auto file = pattern(16 << 20, 15);
  f.dir.write("big.bin", file);
  f.connect();
  f.lab.client.send("big.bin\n");
  f.lab.run([&] { return f.lab.client.received.size() > (2 << 20); });
  REQUIRE(f.lab.client.received.size() < file.size());
  // Frozen, the session hands nothing more to lwIP although ACKs keep arriving.
  f.session->freeze();
  auto state_before = f.session->leg_app_state(0);
  f.lab.run([] { return false; }, 30);
  CHECK(f.session->leg_app_state(0) == state_before);
  auto moved = f.move();
  auto state = decode_files_state(moved.snapshot.app_state);
  REQUIRE(state);
  CHECK(state->phase == FilesPhase::sending);
  CHECK(state->name == "big.bin");
  CHECK(state->offset < file.size());
  f.download();
  INFO("client received ", f.lab.client.received.size(), " of ", file.size());
  CHECK(f.lab.client.received == file);
  CHECK(f.lab.client.remote_closed);
  CHECK_FALSE(f.lab.client.failed);
  CHECK(f.lab.rst_seen == 0);
  CHECK(f.guard.counters().unparked == 1);
  f.lab.run([&] { return f.finished == 1; });
  CHECK(f.finished == 1);
}

TEST_CASE("a files session holding its output queues no file byte while TCP drains the queue; released, it finishes") {
  FilesLab f;
  auto file = pattern(16 << 20, 17);
  f.dir.write("big.bin", file);
  f.connect();
  f.lab.client.send("big.bin\n");
  f.lab.run([&] { return f.lab.client.received.size() > (1 << 20); });
  REQUIRE(f.lab.client.received.size() < file.size());
  f.session->hold_output();
  auto state_held = f.session->leg_app_state(0);
  tcp_pcb* pcb = f.session->legs().front().pcb;
  REQUIRE(pcb != nullptr);
  const uint32_t queued_end = pcb->snd_lbb;
  // What was queued still goes and is acknowledged (the connection is not frozen)...
  f.lab.run([&] { return pcb->lastack == queued_end; });
  CHECK(pcb->lastack == queued_end);
  // ...but nothing more joins it, however long the ACKs keep coming.
  f.lab.run([] { return false; }, 30);
  CHECK(pcb->snd_lbb == queued_end);
  CHECK(f.session->leg_app_state(0) == state_held);
  const size_t received_held = f.lab.client.received.size();
  CHECK(received_held < file.size());
  f.session->release_output();
  f.download();
  CHECK(f.lab.client.received.size() > received_held);
  CHECK(f.lab.client.received == file);
  CHECK(f.lab.rst_seen == 0);
}

TEST_CASE("a request line split across a move, with bytes held while frozen, is served by the new host") {
  FilesLab f;
  auto file = pattern(1 << 20, 16);
  f.dir.write("big.bin", file);
  f.connect();
  f.lab.client.send("big.");
  f.lab.run([&] {
    auto state = decode_files_state(f.session->leg_app_state(0));
    return state && state->request_so_far == "big.";
  });
  // The rest arrives while the session is frozen: held, not consumed, and carried along.
  f.session->freeze();
  f.lab.client.send("bin 5\n");
  f.lab.run([&] { return f.session->leg_received(0).size() == 6; });
  auto moved = f.move();
  CHECK(std::string(moved.snapshot.received.begin(), moved.snapshot.received.end()) == "bin 5\n");
  f.download();
  CHECK(f.lab.client.received == tail(file, 5));
  CHECK(f.lab.rst_seen == 0);
}

TEST_CASE("a session whose file is gone or differs on the new host is refused, leaving the pcb alone") {
  FilesLab f;
  f.dir.write("big.bin", pattern(1000, 17));
  tcp_pcb* pcb = tcp_new();
  REQUIRE(pcb != nullptr);
  tcp_recv_fn fresh_recv = pcb->recv;
  FilesState state;
  state.phase = FilesPhase::sending;
  state.name = "big.bin";
  state.offset = 10;
  state.size = 999;  // the old host's file had another size
  std::string error;
  CHECK(make_movable_session("files", f.context(), pcb, {}, encode_files_state(state), {}, error) == nullptr);
  CHECK(error.find("999") != std::string::npos);
  state.name = "gone.bin";
  error.clear();
  CHECK(make_movable_session("files", f.context(), pcb, {}, encode_files_state(state), {}, error) == nullptr);
  CHECK_FALSE(error.empty());
  error.clear();
  CHECK(make_movable_session("files", f.context(), pcb, {}, {1, 7}, {}, error) == nullptr);
  CHECK_FALSE(error.empty());
  error.clear();
  CHECK(make_movable_session("gopher", f.context(), pcb, {}, {}, {}, error) == nullptr);
  CHECK(error.find("gopher") != std::string::npos);
  CHECK(pcb->callback_arg == nullptr);
  bool recv_untouched = pcb->recv == fresh_recv;
  CHECK(recv_untouched);
  tcp_close(pcb);
}

}  // namespace
