// The `files` app: a resumable file service on the carrier, like the papers' download
// experiments. The client sends one request line `NAME[ OFFSET]\n` (apps/files_state.hpp);
// the server sends the file from OFFSET to its end and half-closes. A bad request is logged
// once and answered with FIN and no bytes. Sessions can move to another server
// (MovableSession): the state is the file name and the offset reached. The server's session
// table owns the session; the session owns its carrier and file. Loop thread only.
//
//   file --pread (256 KiB)--> buffer_ --tcp_write (as send space allows)--> carrier
// Refills wait until lwIP has freed a large step of send space (or the file's end fits),
// not every ACK: each tcp_write walks lwIP's unsent queue (see apps/kernel_splice.cpp).
// File reads are blocking preads on the loop thread (page cache speed is assumed).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "apps/files_state.hpp"
#include "stack/migrate/movable_session.hpp"
#include "apps/session_end.hpp"
#include "stack/node.hpp"
#include "stack/tcp_connection.hpp"

namespace roam {

class FilesSession final : public SingleLegSession, public TcpConnection::Handler {
 public:
  // Also accepts a callable taking MovableSession* (so one session table serves all kinds).
  using FinishedFn = std::function<void(FilesSession*)>;

  // An accepted connection; file names are relative to `root`.
  FilesSession(Node& node, std::string root, tcp_pcb* pcb, FinishedFn on_finished);
  ~FilesSession() override;
  FilesSession(const FilesSession&) = delete;
  FilesSession& operator=(const FilesSession&) = delete;

  // Rebuilds a moved session around an imported pcb. In phase `sending` the file is opened
  // again under `root` and must have the recorded size. `received` is taken first; nothing
  // is sent before the next loop turn, so the importer can park the pcb first. Returns
  // nullptr with `error` set, leaving the pcb untouched, when the state is malformed or the
  // file does not match.
  static std::unique_ptr<FilesSession> import(Node& node, std::string root, tcp_pcb* pcb, std::vector<uint8_t> received,
                                              std::span<const uint8_t> app_state, FinishedFn on_finished,
                                              std::string& error);

  // MovableSession
  const char* kind() const override { return "files"; }
  tcp_pcb* pcb() const override { return carrier_->pcb(); }
  bool movable() const override;
  void freeze() override;
  void thaw() override;
  // A download is the case pre-copy's held round is for: the file stops flowing into the
  // send queue; TCP drains what is queued.
  void hold_output() override { output_held_ = true; }
  void release_output() override;
  std::vector<uint8_t> received_unconsumed() const override { return held_; }
  std::vector<uint8_t> app_state() const override;
  tcp_pcb* release_pcb() override;
  // Only while sending: the file name and offset are all a resume needs to regenerate the
  // rest of the download.
  std::optional<CheckpointSource> checkpoint_source() const override;
  // Graceful (FIN) when the whole file is queued or no request came yet; a reset mid-file,
  // so the client never takes a cut-short file for a whole one. Not while frozen: thaw first.
  void close() override;

  // TcpConnection::Handler
  void on_data(TcpConnection&, PbufPtr data) override;
  void on_remote_closed(TcpConnection&) override;
  void on_sent(TcpConnection&, size_t bytes) override;
  void on_error(TcpConnection&, err_t error) override;

 private:
  // Owns one file descriptor.
  class File {
   public:
    File() = default;
    explicit File(int fd) : fd_(fd) {}
    ~File();
    File(File&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
    File& operator=(File&& other) noexcept;
    int get() const { return fd_; }

   private:
    int fd_ = -1;
  };
  struct OpenedFile {
    File file;
    uint64_t size = 0;
  };
  // Opens root/name read-only: a regular file, never through a symlink; else the reason.
  static Result<OpenedFile, std::string> open_file(const std::string& root, const std::string& name);

  FilesSession(Node& node, std::string root, tcp_pcb* pcb, FinishedFn on_finished, FilesState state, OpenedFile file);
  // Takes received bytes: the request line while reading it, ignored afterwards.
  void take(std::span<const uint8_t> bytes);
  void start_frozen();
  void start(std::string_view line);
  // The client closed before its request line was complete: refuse.
  void check_request_eof();
  void refuse(const std::string& reason);
  void pump();
  bool refill();
  void finish(bool reset);

  Node& node_;
  std::string root_;
  std::unique_ptr<TcpConnection> carrier_;
  SessionEnd end_;
  FilesState state_;  // phase, request so far, name, offset (next byte to hand to lwIP), size
  File file_;
  // File bytes read ahead of state_.offset: buffer_[buffer_begin_, buffer_end_).
  std::vector<uint8_t> buffer_;
  size_t buffer_begin_ = 0;
  size_t buffer_end_ = 0;
  // Received while frozen: not consumed (not acknowledged to the app) until thawed, or
  // carried to the new host.
  std::vector<uint8_t> held_;
  bool remote_eof_ = false;
  bool refused_ = false;
  bool fin_sent_ = false;
  bool frozen_ = false;
  bool output_held_ = false;  // hold_output(): nothing more is queued until released
};

}  // namespace roam
