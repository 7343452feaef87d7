// warm_heap_for_moves: keeps a move's large buffers (snapshots, control frames, lwIP's
// re-queued segments) off fresh pages. A first-touch page fault costs about 10 us per
// 4 KiB page on these VMs (DESIGN.md section 8), so a 4 MiB window moved through three
// fresh buffers costs ~30 ms in faults alone. glibc serves blocks above 128 KiB with mmap
// and returns them on free; here they come from the heap instead, freed memory stays
// mapped, and the heap is grown and touched once at start. Call before the loop starts.
#pragma once

#include <malloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace roam {

// Also locks the process's pages in memory when that can never fail later (root, or an
// unlimited RLIMIT_MEMLOCK: with a finite limit, MCL_FUTURE would make allocations fail
// once the limit is reached): the code and data a move touches for the first time (import
// paths, lwIP's segment allocations) are then already resident. Measured on the first
// move of a download: the import went from 20-28 ms to 4-10 ms. Returns whether it locked.
inline bool warm_heap_for_moves(size_t bytes) {
  // 32 MiB is the largest threshold glibc accepts on 64-bit (larger values are refused).
  constexpr size_t block_bytes = 8u << 20;
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  std::vector<void*> blocks;
  for (size_t done = 0; done < bytes; done += block_bytes) {
    void* block = std::malloc(block_bytes);
    if (block == nullptr) break;
    std::memset(block, 0, block_bytes);
    blocks.push_back(block);
  }
  // Freed together they coalesce into the heap's top, which stays mapped (trim threshold)
  // and serves the next big buffers from touched pages.
  for (void* block : blocks) std::free(block);
#if defined(__SANITIZE_ADDRESS__)
  return false;  // ASan reserves terabytes of shadow memory: never lock that
#else
  rlimit limit{};
  bool unlimited = getrlimit(RLIMIT_MEMLOCK, &limit) == 0 && limit.rlim_cur == RLIM_INFINITY;
  if (geteuid() != 0 && !unlimited) return false;
  return mlockall(MCL_CURRENT | MCL_FUTURE) == 0;
#endif
}

}  // namespace roam
