// warm_heap_for_moves: keeps a move's large buffers (snapshots, control frames, lwIP's
// re-queued segments) off fresh pages. A first-touch page fault costs about 10 us per
// 4 KiB page on these VMs (DESIGN.md section 8), so a 4 MiB window moved through three
// fresh buffers costs ~30 ms in faults alone. glibc serves blocks above 128 KiB with mmap
// and returns them on free; here they come from the heap instead, freed memory stays
// mapped, and the heap is grown and touched once at start. Call before the loop starts.
#pragma once

#include <malloc.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace roam {

inline void warm_heap_for_moves(size_t bytes) {
  mallopt(M_MMAP_THRESHOLD, 512 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (bytes == 0) return;
  void* block = std::malloc(bytes);
  if (block == nullptr) return;
  std::memset(block, 0, bytes);
  std::free(block);  // stays in the heap (trim threshold), ready for the next big buffer
}

}  // namespace roam
