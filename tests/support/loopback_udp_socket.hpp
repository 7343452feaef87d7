// LoopbackUdpSocket: a UDP socket bound to 127.0.0.1:0 for tests that talk to a real
// UdpLink (closed with the object). Test code: REQUIREs on failure.
#pragma once

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

namespace roam::testing {

struct LoopbackUdpSocket {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  LoopbackUdpSocket() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~LoopbackUdpSocket() { close(fd); }
  LoopbackUdpSocket(const LoopbackUdpSocket&) = delete;
  LoopbackUdpSocket& operator=(const LoopbackUdpSocket&) = delete;
  sockaddr_storage address() const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return a;
  }
  void send_to(const sockaddr_storage& to, const std::vector<uint8_t>& bytes) const {
    REQUIRE(sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<const sockaddr*>(&to), sizeof(sockaddr_in)) ==
            static_cast<ssize_t>(bytes.size()));
  }
};

}  // namespace roam::testing
