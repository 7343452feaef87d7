#include "tun/uring_batch_reader.hpp"

#include <sys/uio.h>

#include <cerrno>
#include <cstring>

namespace roam {

std::unique_ptr<UringBatchReader> UringBatchReader::create(int fd, unsigned depth, std::string& why) {
  std::unique_ptr<UringBatchReader> reader(new UringBatchReader(fd, depth));
  if (int rc = io_uring_queue_init(depth, &reader->ring_, 0); rc < 0) {
    why = std::string("io_uring_queue_init: ") + std::strerror(-rc);
    return nullptr;  // the destructor leaves the ring alone: its fd field is 0, not a ring's
  }
  reader->ring_ready_ = true;
  return reader;
}

UringBatchReader::~UringBatchReader() {
  if (ring_ready_) io_uring_queue_exit(&ring_);
}

bool UringBatchReader::read(std::span<std::vector<uint8_t>> buffers, size_t count, std::span<int32_t> results) {
  if (count > depth_ || count > buffers.size() || count > results.size()) return false;
  for (size_t i = 0; i < count; ++i) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return false;  // cannot happen: the ring holds depth_ and none is pending
    // Offset -1: the file's own position (a TUN device has none to speak of).
    io_uring_prep_read(sqe, fd_, buffers[i].data(), static_cast<unsigned>(buffers[i].size()),
                       static_cast<uint64_t>(-1));
    // RWF_NOWAIT: an empty queue completes the read with -EAGAIN. io_uring does not take
    // the fd's O_NONBLOCK for that on a pollable file (it arms a poll and the read stays
    // pending, here forever: this call waits for every read).
    sqe->rw_flags = RWF_NOWAIT;
    io_uring_sqe_set_data64(sqe, i);
    results[i] = -EAGAIN;
  }
  // Waits for every completion: a buffer must not be reused while a read may still fill it.
  // On a non-blocking fd each read completes during the submission itself.
  int submitted = io_uring_submit_and_wait(&ring_, static_cast<unsigned>(count));
  while (submitted == -EINTR) submitted = io_uring_submit_and_wait(&ring_, 0);
  if (submitted < 0) {
    // Nothing was queued to the kernel (or what was completes anyway): drain what came.
    io_uring_cqe* cqe = nullptr;
    while (io_uring_peek_cqe(&ring_, &cqe) == 0) io_uring_cqe_seen(&ring_, cqe);
    return false;
  }
  size_t seen = 0;
  while (seen < count) {
    io_uring_cqe* cqe = nullptr;
    if (int rc = io_uring_wait_cqe(&ring_, &cqe); rc < 0) {
      if (rc == -EINTR) continue;
      return false;
    }
    uint64_t slot = io_uring_cqe_get_data64(cqe);
    if (slot < count) results[slot] = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    ++seen;
  }
  return true;
}

}  // namespace roam
