// UringBatchReader on a real io_uring and a non-blocking datagram socket, which like a TUN
// fd returns one message per read(): packets come back in order, one per buffer, reads
// that find nothing end with -EAGAIN at once (none is left pending), a packet larger than
// its buffer is cut to it as read() would.
#include "tun/uring_batch_reader.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <string>
#include <vector>

namespace {

using roam::UringBatchReader;

struct DatagramPair {
  int fds[2] = {-1, -1};
  DatagramPair() { REQUIRE(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0); }
  ~DatagramPair() { close_both(); }
  void close_both() {
    for (int& fd : fds) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
  void send(const std::string& message) const {
    REQUIRE(::send(fds[1], message.data(), message.size(), 0) == static_cast<ssize_t>(message.size()));
  }
};

// A reader of `depth` on a fresh datagram pair, with `slots` buffers of `buffer_bytes`.
struct ReaderLab {
  DatagramPair pair;
  std::unique_ptr<UringBatchReader> reader;
  std::vector<std::vector<uint8_t>> buffers;
  std::vector<int32_t> results;
  ReaderLab(unsigned depth, size_t slots, size_t buffer_bytes)
      : buffers(slots, std::vector<uint8_t>(buffer_bytes)), results(slots) {
    std::string why;
    reader = UringBatchReader::create(pair.fds[0], depth, why);
    REQUIRE_MESSAGE(reader, why);
  }
  bool read(size_t count) { return reader->read(buffers, count, results); }
  std::string text(size_t slot) const {
    return std::string(buffers[slot].begin(), buffers[slot].begin() + results[slot]);
  }
};

}  // namespace

TEST_CASE("io_uring batch reads: one packet per buffer, in order; the rest -EAGAIN, nothing pending") {
  ReaderLab lab(8, 8, 64);
  lab.pair.send("first");
  lab.pair.send("second packet");
  lab.pair.send("3");
  REQUIRE(lab.read(8));
  CHECK(lab.results[0] == 5);
  CHECK(lab.text(0) == "first");
  CHECK(lab.text(1) == "second packet");
  CHECK(lab.text(2) == "3");
  for (size_t i = 3; i < 8; ++i) CHECK(lab.results[i] == -EAGAIN);

  // Nothing queued: every read ends at once (a pending one would block this call).
  REQUIRE(lab.read(4));
  for (size_t i = 0; i < 4; ++i) CHECK(lab.results[i] == -EAGAIN);

  // The reader is reusable, and a packet larger than its buffer is cut to it.
  lab.pair.send(std::string(100, 'x'));
  lab.pair.send("after");
  REQUIRE(lab.read(2));
  CHECK(lab.results[0] == 64);
  CHECK(lab.text(1) == "after");
}

TEST_CASE("io_uring batch reads: more reads than the ring holds are refused, nothing submitted") {
  ReaderLab lab(4, 8, 64);
  lab.pair.send("kept");
  CHECK_FALSE(lab.read(5));
  REQUIRE(lab.read(1));
  CHECK(lab.text(0) == "kept");
}

TEST_CASE("io_uring batch reads: a closed fd gives -EBADF per read, counted by the caller, no hang") {
  ReaderLab lab(2, 2, 16);
  lab.pair.close_both();
  REQUIRE(lab.read(2));
  CHECK(lab.results[0] == -EBADF);
  CHECK(lab.results[1] == -EBADF);
}

TEST_CASE("io_uring batch reads: a ring the kernel refuses leaves every fd alone (fd 0 included)") {
  // A ring of depth 0 is refused (EINVAL). The reader must not then "exit" a ring that
  // never was: its zeroed fd field would close fd 0.
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const int saved_stdin = ::dup(0);  // -1 when fd 0 is closed: then it is opened for the test
  if (saved_stdin < 0) REQUIRE(::dup2(fds[0], 0) == 0);
  std::string why;
  CHECK(roam::UringBatchReader::create(fds[0], 0, why) == nullptr);
  CHECK_FALSE(why.empty());
  CHECK(::fcntl(0, F_GETFD) != -1);
  CHECK(::fcntl(fds[0], F_GETFD) != -1);
  if (saved_stdin >= 0) {
    ::dup2(saved_stdin, 0);
    ::close(saved_stdin);
  } else {
    ::close(0);
  }
  ::close(fds[0]);
  ::close(fds[1]);
}
