#include "apps/files_app.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace roam {

namespace {
constexpr size_t read_chunk = 256 * 1024;
// Refill once lwIP has freed this much send space (kernel_splice.cpp: a write per ACK
// costs quadratic time at large windows). Half the send buffer when that is smaller, so a
// small build still makes progress.
constexpr size_t refill_step = std::min<size_t>(128 * 1024, TCP_SND_BUF / 2);
// At most this much written but not yet sent: the window (in flight) still fills, but a
// move does not have to carry megabytes the new server could read from the file itself.
constexpr size_t max_unsent = 512 * 1024;

}  // namespace

FilesSession::File::~File() {
  if (fd_ >= 0) ::close(fd_);
}

FilesSession::File& FilesSession::File::operator=(File&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

Result<FilesSession::OpenedFile, std::string> FilesSession::open_file(const std::string& root,
                                                                      const std::string& name) {
  // `name` passed is_valid_file_name: no slash, not "." or "..", so the path stays in root.
  // O_NOFOLLOW refuses a symlink planted there; O_NONBLOCK keeps a FIFO from blocking the
  // loop in open() (it is refused below as not a regular file).
  std::string path = (root.empty() ? std::string(".") : root) + "/" + name;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    int e = errno;
    if (e == ELOOP) return unexpected("'" + name + "' is a symbolic link");
    return unexpected("cannot open '" + name + "': " + std::strerror(e));
  }
  OpenedFile opened{File(fd), 0};
  struct stat info {};
  if (::fstat(fd, &info) != 0) return unexpected("cannot stat '" + name + "': " + std::strerror(errno));
  if (!S_ISREG(info.st_mode)) return unexpected("'" + name + "' is not a regular file");
  opened.size = static_cast<uint64_t>(info.st_size);
  return opened;
}

FilesSession::FilesSession(Node& node, std::string root, tcp_pcb* pcb, FinishedFn on_finished)
    : FilesSession(node, std::move(root), pcb, std::move(on_finished), FilesState{}, OpenedFile{}) {}

FilesSession::FilesSession(Node& node, std::string root, tcp_pcb* pcb, FinishedFn on_finished, FilesState state,
                           OpenedFile file)
    : node_(node),
      root_(std::move(root)),
      carrier_(std::make_unique<TcpConnection>(pcb, this)),
      end_(node,
           [this, notify = std::move(on_finished)] {
             if (notify) notify(this);
           }),
      state_(std::move(state)),
      file_(std::move(file.file)) {}

FilesSession::~FilesSession() = default;

std::unique_ptr<FilesSession> FilesSession::import(Node& node, std::string root, tcp_pcb* pcb,
                                                   std::vector<uint8_t> received, std::span<const uint8_t> app_state,
                                                   FinishedFn on_finished, std::string& error) {
  // Everything is checked before the pcb is touched: on failure the importer still owns it.
  auto state = decode_files_state(app_state);
  if (!state) {
    error = std::string("files app state: ") + files_state_error_name(state.error());
    return nullptr;
  }
  OpenedFile opened;
  if (state->phase == FilesPhase::sending) {
    auto file = open_file(root, state->name);
    if (!file) {
      error = "files: " + file.error();
      return nullptr;
    }
    // Another file under the same name would splice two files into one download.
    if (file->size != state->size) {
      error = "files: '" + state->name + "' has " + std::to_string(file->size) + " bytes here, " +
              std::to_string(state->size) + " at the old host";
      return nullptr;
    }
    opened = std::move(*file);
  }
  // A FIN that arrived before the move left the pcb in CLOSE_WAIT; lwIP will not report it again.
  bool remote_eof = pcb->state == CLOSE_WAIT;
  std::unique_ptr<FilesSession> session(
      new FilesSession(node, std::move(root), pcb, std::move(on_finished), std::move(*state), std::move(opened)));
  session->remote_eof_ = remote_eof;
  session->held_ = std::move(received);
  session->start_frozen();
  return session;
}

void FilesSession::start_frozen() {
  // Resumes on the next loop turn, once the importer has registered it everywhere; data
  // arriving meanwhile queues behind `received`.
  frozen_ = true;
  end_.resume_later([this] { thaw(); });
}

void FilesSession::on_data(TcpConnection& carrier, PbufPtr data) {
  size_t length = data->tot_len;
  if (frozen_ && !end_.finishing()) {
    append_pbuf(held_, *data);
    return;
  }
  if (end_.finishing() || state_.phase != FilesPhase::reading_request) {
    // Ignored, but consumed: the window stays open and a close sends FIN, not the RST
    // lwIP sends for unread data.
    carrier.consumed(length);
    return;
  }
  std::vector<uint8_t> bytes;  // at most a request line's worth is kept
  append_pbuf(bytes, *data);
  take(bytes);
}

void FilesSession::take(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  carrier_->consumed(bytes.size());  // all of it: the request line, or bytes we ignore
  if (end_.finishing() || state_.phase != FilesPhase::reading_request) return;
  auto newline = std::find(bytes.begin(), bytes.end(), uint8_t{'\n'});
  size_t line_bytes = static_cast<size_t>(newline - bytes.begin());
  if (state_.request_so_far.size() + line_bytes >= files_max_request_bytes) {
    refuse("request line longer than " + std::to_string(files_max_request_bytes) + " bytes");
    return;
  }
  state_.request_so_far.append(bytes.begin(), newline);
  if (newline == bytes.end()) return;
  std::string line = std::move(state_.request_so_far);
  state_.request_so_far.clear();
  start(line);
}

void FilesSession::start(std::string_view line) {
  auto request = parse_files_request(line);
  if (!request) {
    refuse(files_request_error_name(request.error()));
    return;
  }
  auto opened = open_file(root_, request->name);
  if (!opened) {
    refuse(opened.error());
    return;
  }
  if (request->offset > opened->size) {
    refuse("offset " + std::to_string(request->offset) + " beyond the " + std::to_string(opened->size) + " bytes of '" +
           request->name + "'");
    return;
  }
  logger("app")->debug("files: {}: sending '{}' from {} of {}", carrier_->describe(), request->name, request->offset,
                       opened->size);
  state_.phase = FilesPhase::sending;
  state_.name = std::move(request->name);
  state_.offset = request->offset;
  state_.size = opened->size;
  file_ = std::move(opened->file);
  pump();
}

void FilesSession::check_request_eof() {
  if (remote_eof_ && state_.phase == FilesPhase::reading_request && !end_.finishing())
    refuse("connection closed before the request line ended");
}

void FilesSession::refuse(const std::string& reason) {
  // Once per connection, never per packet; `reason` holds only validated names.
  logger("app")->info("files: {}: refused request: {}", carrier_->describe(), reason);
  finish(false);  // FIN, no bytes: everything received was consumed, so no RST
}

void FilesSession::pump() {
  if (frozen_ || output_held_ || end_.finishing() || !carrier_->alive() || state_.phase != FilesPhase::sending) return;
  while (state_.offset < state_.size) {
    size_t unsent = carrier_->unsent_bytes();
    if (unsent >= max_unsent) break;  // on_sent resumes once lwIP sent some
    if (buffer_begin_ == buffer_end_ && !refill()) return;
    size_t take = std::min(buffer_end_ - buffer_begin_, max_unsent - unsent);
    size_t written = carrier_->write({buffer_.data() + buffer_begin_, take});
    buffer_begin_ += written;
    state_.offset += written;
    if (written < take) break;  // lwIP is full; on_sent resumes
  }
  if (state_.offset == state_.size && !fin_sent_) {
    fin_sent_ = true;
    carrier_->shutdown_write();
  }
  carrier_->flush();
  if (fin_sent_ && carrier_->everything_acknowledged()) finish(false);
}

bool FilesSession::refill() {
  if (buffer_.size() < read_chunk) buffer_.resize(read_chunk);
  size_t want = static_cast<size_t>(std::min<uint64_t>(read_chunk, state_.size - state_.offset));
  ssize_t n;
  do {
    n = ::pread(file_.get(), buffer_.data(), want, static_cast<off_t>(state_.offset));
  } while (n < 0 && errno == EINTR);
  if (n <= 0) {
    // Shrunk or unreadable underneath us: a reset tells the client the file is incomplete.
    logger("app")->warn("files: {}: reading '{}' at {}: {}", carrier_->describe(), state_.name, state_.offset,
                        n == 0 ? "file shrank" : std::strerror(errno));
    finish(true);
    return false;
  }
  buffer_begin_ = 0;
  buffer_end_ = static_cast<size_t>(n);
  return true;
}

void FilesSession::on_remote_closed(TcpConnection&) {
  remote_eof_ = true;
  if (frozen_ || end_.finishing()) return;
  check_request_eof();
  pump();
}

void FilesSession::on_sent(TcpConnection&, size_t) {
  if (frozen_ || end_.finishing()) return;
  if (state_.phase == FilesPhase::sending && !fin_sent_) {
    uint64_t left = state_.size - state_.offset;
    size_t space = std::min(carrier_->send_space(), max_unsent - std::min(max_unsent, carrier_->unsent_bytes()));
    if (space < carrier_->send_step(refill_step) && left > space) return;  // wait for a larger step
  }
  pump();
}

void FilesSession::on_error(TcpConnection&, err_t error) {
  // ERR_CLSD: our FIN was acknowledged after the client's (LAST_ACK done), the normal end.
  if (error != ERR_CLSD) logger("app")->debug("files session failed: {}", lwip_error_name(error));
  finish(true);  // the pcb is gone: nothing is sent either way
}

bool FilesSession::movable() const {
  return carrier_->alive() && !end_.finishing() && !fin_sent_;
}

void FilesSession::freeze() {
  frozen_ = true;
  end_.cancel_resume();  // an imported session not yet resumed: thaw() resumes it
}

void FilesSession::thaw() {
  frozen_ = false;
  std::vector<uint8_t> held = std::move(held_);
  held_.clear();
  take(held);
  check_request_eof();
  pump();
}

void FilesSession::release_output() {
  if (!output_held_) return;
  output_held_ = false;
  if (!frozen_) pump();
}

std::vector<uint8_t> FilesSession::app_state() const {
  return encode_files_state(state_);
}

std::optional<CheckpointSource> FilesSession::checkpoint_source() const {
  if (!movable() || pcb() == nullptr || state_.phase != FilesPhase::sending) return std::nullopt;
  return CheckpointSource{pcb(), app_state()};
}

tcp_pcb* FilesSession::release_pcb() {
  return end_.release(*carrier_);
}

void FilesSession::close() {
  finish(state_.phase == FilesPhase::sending && !fin_sent_);
}

void FilesSession::finish(bool reset) {
  end_.finish(*carrier_, reset);
}

}  // namespace roam
