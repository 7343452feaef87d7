// TunSynCheck: the first-SYN check of stack/defense/syn_retx_table.hpp, run by the kernel
// on a TUN device's way to us (issue 13). roam-server reads each packet of a TUN device
// with a system call's worth of kernel work (tun_do_read, the copy, freeing the skb: most
// of its thread's time under a SYN flood), so a flood faster than one reader takes
// (~720-750k packets a second on the project's VMs) overflowed the device's queue and
// took legitimate SYNs with it. With this check the kernel drops a flooded SYN's first
// copy in tun_net_xmit, in the sender's context, before it is queued: a spoofed flood,
// which sends each SYN once, never reaches roam-server at all, as the kernel's own SYN
// cookies run in the flood's softirq.
//
// An eBPF socket-filter program (TUNSETFILTEREBPF; needs CAP_BPF or root) and two maps,
// both mmap()ed here so that switching, rotating and reading counters cost no system call:
//   state  one element: u32 active, u32 current generation, u64 judged, first_dropped,
//          retx_passed (the program adds to the counters atomically)
//   bits   2^k elements of two u64 words, one per generation: the same blocked Bloom
//          filter as SynRetxTable (two bits of one word per SYN), indexed by a keyed
//          multiply-xorshift hash of the packet's bytes 12-27 (source, destination, ports,
//          ISN) under a per-process random 128-bit key in the program's immediates.
// Judged, while active: IPv4 packets without IP options or fragmentation whose TCP flags
// among SYN, ACK, RST and FIN are exactly SYN (judges() says the same in userspace). A
// judged SYN found in either generation is passed (a retransmission) and recorded again;
// one not found is recorded in the current generation and dropped. Everything else, and
// everything while inactive, passes untouched. advance() clears the older generation
// every generation_ms and makes it the current one, as SynRetxTable does.
// RAII: the maps and program are freed with the object; the TUN keeps the program only
// while attached (detach() before its fd closes: a persistent device would keep it).
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace roam {

struct TunSynCheckConfig {
  uint32_t words_log2 = 19;      // 2^19 elements of 2 x 64 bits: 4 MiB per generation, as SynRetxTable's default
  uint64_t generation_ms = 3000;  // covers Linux's 1 s and 2 s gaps between SYN copies
};

struct TunSynCheckCounters {
  uint64_t judged = 0;         // SYNs the program looked up while active
  uint64_t first_dropped = 0;  // ...not found: recorded and dropped in the kernel
  uint64_t retx_passed = 0;    // ...found: a retransmission, passed to roam-server
};

// The program, pure: `state_fd` and `bits_fd` are the maps' fds (in the ld_imm64 pseudo
// loads), `key` the hash key, `words_log2` the size of bits. Exposed for tests.
std::vector<bpf_insn> tun_syn_check_program(int state_fd, int bits_fd, uint64_t key0, uint64_t key1,
                                            uint32_t words_log2);

struct TunSynCheckState;  // the state map's one element, mmap()ed (tun_syn_check.cpp)

class TunSynCheck {
 public:
  // nullptr with `why` set when the kernel refuses the maps or the program (no CAP_BPF).
  static std::unique_ptr<TunSynCheck> create(TunSynCheckConfig config, std::string& why);
  ~TunSynCheck();
  TunSynCheck(const TunSynCheck&) = delete;
  TunSynCheck& operator=(const TunSynCheck&) = delete;

  // Hands the program to the TUN device behind `tun_fd` (which must be attached to it).
  bool attach(int tun_fd, std::string& why);
  // Takes it off again (before the fd closes). A program left by a process that died is
  // taken off by detach_any (TunLink::start calls it on every device it attaches to).
  void detach(int tun_fd);
  static void detach_any(int tun_fd);

  void set_active(bool active);
  bool active() const;
  // Rotates the generations up to now_ms (call at least every generation_ms).
  void advance(uint64_t now_ms);
  TunSynCheckCounters counters() const;
  int program_fd() const { return program_fd_; }
  // Whether the program judges this IP packet (while active): the same test, in userspace.
  static bool judges(std::span<const uint8_t> packet);

 private:
  explicit TunSynCheck(TunSynCheckConfig config) : config_(config) {}

  TunSynCheckConfig config_;
  int state_fd_ = -1;
  int bits_fd_ = -1;
  int program_fd_ = -1;
  TunSynCheckState* state_ = nullptr;
  size_t state_bytes_ = 0;
  uint64_t* bits_ = nullptr;  // elements of {generation 0 word, generation 1 word}
  size_t bits_bytes_ = 0;
  uint64_t generation_started_ms_ = 0;
  bool started_ = false;
};

}  // namespace roam
