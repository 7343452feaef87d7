// ChannelConnection: a control channel (stack/control/channel.hpp) on one lwIP TCP
// connection: feeds what arrives to the channel, writes what it produces (queued while
// lwIP's send buffer is full), reports the handshake, each message, and the end. Used by
// the server's ChannelServer (accepted, responder) and the client's MoveFollower
// (connected, initiator). Loop thread only.
//
// Every bad frame is reported (on_bad_frame) and nothing acts on it. A frame that fails
// authentication or replays an old counter means the TCP stream was written into: the
// connection is reset (as TLS does on a bad record MAC) and the owner opens a new channel;
// so does any fatal channel error (failed handshake, broken framing). An authentic
// message that does not decode is only dropped. With --segment-mac at both ends, the
// connection itself is protected by the segment MAC once the handshake is done (keyed from
// it), so such bytes never reach the channel: TCP drops a pure replay, the MAC the rest.
// `on_closed` is called once, never from inside the constructor; the owner destroys the
// object later (deferred), never inside one of its callbacks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/uv_handle.hpp"
#include "stack/control/channel.hpp"
#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"

namespace roam {

class ChannelConnection final : public TcpConnection::Handler {
 public:
  struct Callbacks {
    std::function<void(ChannelConnection&)> on_established;
    std::function<void(ChannelConnection&, const control::Message&)> on_message;
    // A dropped frame (not fatal): for counting and rate-limited logging.
    std::function<void(ChannelConnection&, control::ChannelError)> on_bad_frame;
    std::function<void(ChannelConnection&, const std::string& why)> on_closed;
    // The handshake did not complete within limit_handshake's time (the connection is
    // reset next, and on_closed follows).
    std::function<void(ChannelConnection&)> on_handshake_timeout;
  };

  // `channel` must outlive nothing but this object; its identity key must outlive both.
  ChannelConnection(Node& node, std::unique_ptr<control::ControlChannel> channel, Callbacks callbacks);
  ~ChannelConnection() override;
  ChannelConnection(const ChannelConnection&) = delete;
  ChannelConnection& operator=(const ChannelConnection&) = delete;

  // Responder: an accepted connection. Initiator: an active open still connecting
  // (`established` false) or established.
  void attach(std::unique_ptr<TcpConnection> connection, bool established);

  // Seals and sends one message; false when the channel is not established or closed.
  bool send(const control::Message& message);
  // Closes gracefully (FIN after queued output); on_closed follows.
  void close(const std::string& why);
  // Resets the connection if the Noise handshake has not completed `ms` from now, so a peer
  // that connects and says nothing (or too little) holds no pcb and no state for long.
  void limit_handshake(uint64_t ms);

  bool established() const { return channel_->established() && !closed_; }
  bool closed() const { return closed_; }
  const control::ControlChannel& channel() const { return *channel_; }
  // The peer's carrier address, as this connection sees it.
  const IpAddress& peer_address() const { return peer_address_; }
  uint16_t peer_port() const { return peer_port_; }
  uint16_t local_port() const { return local_port_; }

  // TcpConnection::Handler
  void on_connected(TcpConnection&) override;
  void on_data(TcpConnection&, PbufPtr data) override;
  void on_remote_closed(TcpConnection&) override;
  void on_sent(TcpConnection&, size_t bytes) override;
  void on_error(TcpConnection&, err_t error) override;

 private:
  void queue(std::vector<uint8_t> bytes);
  void pump();
  void process();
  void end(const std::string& why, bool reset);
  void protect_carrier();
  static void on_handshake_timer(uv_timer_t* timer) noexcept;

  Node& node_;
  std::unique_ptr<control::ControlChannel> channel_;
  Callbacks callbacks_;
  std::unique_ptr<TcpConnection> connection_;
  IpAddress peer_address_;
  uint16_t peer_port_ = 0;
  uint16_t local_port_ = 0;
  std::vector<uint8_t> pending_;  // sealed bytes lwIP had no room for yet
  size_t pending_at_ = 0;
  bool closed_ = false;
  UvHandle<uv_timer_t> handshake_timer_;
  uint64_t handshake_limit_ms_ = 0;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace roam
