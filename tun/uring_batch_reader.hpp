// UringBatchReader: many read()s of one non-blocking fd in a single io_uring_enter
// (issue 13). A TUN fd returns one packet per read(), and on the VMs this project runs on
// a system call costs ~1.8 us (tools/bench/README.md, sensor): at a few hundred thousand
// packets a second the reads alone took a core, and the kernel dropped the rest of a SYN
// flood together with legitimate SYNs. Submitting a batch of reads costs one system call;
// each read still runs in the kernel, inline, in order (the fd is non-blocking: one that
// finds no packet completes at once with -EAGAIN (RWF_NOWAIT), none is left pending).
// Loop thread only. RAII: the ring is torn down with the object.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace roam {

class UringBatchReader {
 public:
  // nullptr with `why` set when the kernel has no io_uring (or forbids it): callers read().
  static std::unique_ptr<UringBatchReader> create(int fd, unsigned depth, std::string& why);
  ~UringBatchReader();
  UringBatchReader(const UringBatchReader&) = delete;
  UringBatchReader& operator=(const UringBatchReader&) = delete;

  // Reads into buffers[0..count) (count <= depth), one read each, and waits for all of
  // them (they complete inline). results[i] is read()'s value for buffer i, or -errno.
  // Returns false (results undefined, nothing pending) when the submission itself failed.
  bool read(std::span<std::vector<uint8_t>> buffers, size_t count, std::span<int32_t> results);

 private:
  UringBatchReader(int fd, unsigned depth) : fd_(fd), depth_(depth) {}
  io_uring ring_{};
  bool ring_ready_ = false;  // io_uring_queue_init succeeded: only then is there a ring to exit
  int fd_;
  unsigned depth_;
};

}  // namespace roam
