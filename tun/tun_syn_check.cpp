#include "tun/tun_syn_check.hpp"

#include <linux/if_tun.h>
#include <sodium.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

namespace roam {

// The state map's element, as the program addresses it (offsets in the program below).
struct TunSynCheckState {
  uint32_t active;
  uint32_t current;  // the generation new records go to: 0 or 1
  uint64_t judged;
  uint64_t first_dropped;
  uint64_t retx_passed;
};

namespace {

constexpr int16_t state_active = offsetof(TunSynCheckState, active);
constexpr int16_t state_current = offsetof(TunSynCheckState, current);
constexpr int16_t state_judged = offsetof(TunSynCheckState, judged);
constexpr int16_t state_first_dropped = offsetof(TunSynCheckState, first_dropped);
constexpr int16_t state_retx_passed = offsetof(TunSynCheckState, retx_passed);
constexpr uint32_t state_value_bytes = 64;  // room to grow; the element above is 32
constexpr uint32_t bits_value_bytes = 16;   // one 64-bit word per generation
constexpr uint64_t hash_multiplier = 0x9e3779b97f4a7c15ull;

// The first 40 bytes of the packet (IPv4 and TCP headers without options) go to the
// stack at packet_at: its bytes 12 and 20 (the hash key's two words) land 8-aligned.
constexpr int16_t packet_at = -44;
constexpr int16_t packet_bytes = 40;
constexpr int16_t state_key_at = -48;
constexpr int16_t bits_key_at = -52;
constexpr int16_t byte_at(int b) { return static_cast<int16_t>(packet_at + b); }

// A few eBPF instructions and forward jumps by label: enough for one straight program.
class Assembler {
 public:
  int label() {
    labels_.push_back(-1);
    return static_cast<int>(labels_.size() - 1);
  }
  void bind(int label) { labels_[static_cast<size_t>(label)] = static_cast<long>(code_.size()); }

  void emit(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    bpf_insn insn{};
    insn.code = code;
    insn.dst_reg = dst & 0xf;
    insn.src_reg = src & 0xf;
    insn.off = off;
    insn.imm = imm;
    code_.push_back(insn);
  }
  void mov(uint8_t dst, int32_t imm) { emit(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm); }
  void mov_reg(uint8_t dst, uint8_t src) { emit(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0); }
  void alu(uint8_t op, uint8_t dst, int32_t imm) { emit(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm); }
  void alu_reg(uint8_t op, uint8_t dst, uint8_t src) { emit(BPF_ALU64 | op | BPF_X, dst, src, 0, 0); }
  void load(uint8_t size, uint8_t dst, uint8_t src, int16_t off) { emit(BPF_LDX | BPF_MEM | size, dst, src, off, 0); }
  void store_imm(uint8_t size, uint8_t dst, int16_t off, int32_t imm) { emit(BPF_ST | BPF_MEM | size, dst, 0, off, imm); }
  void store(uint8_t size, uint8_t dst, int16_t off, uint8_t src) { emit(BPF_STX | BPF_MEM | size, dst, src, off, 0); }
  // *(u64 *)(dst + off) op= src, atomically (BPF_ADD or BPF_OR, no fetch).
  void atomic(int32_t op, uint8_t dst, int16_t off, uint8_t src) { emit(BPF_STX | BPF_ATOMIC | BPF_DW, dst, src, off, op); }
  void load_imm64(uint8_t dst, uint64_t value, uint8_t pseudo = 0) {
    emit(BPF_LD | BPF_DW | BPF_IMM, dst, pseudo, 0, static_cast<int32_t>(static_cast<uint32_t>(value)));
    emit(0, 0, 0, 0, static_cast<int32_t>(static_cast<uint32_t>(value >> 32)));
  }
  void load_map(uint8_t dst, int fd) { load_imm64(dst, static_cast<uint32_t>(fd), BPF_PSEUDO_MAP_FD); }
  void call(int32_t helper) { emit(BPF_JMP | BPF_CALL, 0, 0, 0, helper); }
  void exit() { emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }
  void jump_if(uint8_t op, uint8_t dst, int32_t imm, int target) {
    fixups_.emplace_back(code_.size(), target);
    emit(BPF_JMP | op | BPF_K, dst, 0, 0, imm);
  }
  void jump_if_reg(uint8_t op, uint8_t dst, uint8_t src, int target) {
    fixups_.emplace_back(code_.size(), target);
    emit(BPF_JMP | op | BPF_X, dst, src, 0, 0);
  }

  std::vector<bpf_insn> finish() {
    for (auto [at, target] : fixups_)
      code_[at].off = static_cast<int16_t>(labels_[static_cast<size_t>(target)] - static_cast<long>(at) - 1);
    return std::move(code_);
  }

 private:
  std::vector<bpf_insn> code_;
  std::vector<long> labels_;
  std::vector<std::pair<size_t, int>> fixups_;
};

long bpf(int command, bpf_attr& attr) { return syscall(__NR_bpf, command, &attr, sizeof attr); }

int create_array(uint32_t value_bytes, uint32_t entries, std::string& why) {
  bpf_attr attr{};
  attr.map_type = BPF_MAP_TYPE_ARRAY;
  attr.key_size = sizeof(uint32_t);
  attr.value_size = value_bytes;
  attr.max_entries = entries;
  attr.map_flags = BPF_F_MMAPABLE;
  const long fd = bpf(BPF_MAP_CREATE, attr);
  if (fd < 0) why = std::string("bpf map: ") + std::strerror(errno);
  return static_cast<int>(fd);
}

void* map_memory(int fd, size_t bytes, std::string& why) {
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (memory == MAP_FAILED) {
    why = std::string("mmap of a bpf map: ") + std::strerror(errno);
    return nullptr;
  }
  return memory;
}

size_t page_rounded(size_t bytes) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return (bytes + page - 1) / page * page;
}

}  // namespace

std::vector<bpf_insn> tun_syn_check_program(int state_fd, int bits_fd, uint64_t key0, uint64_t key1,
                                            uint32_t words_log2) {
  Assembler a;
  const int pass = a.label();
  const int seen = a.label();
  // Adds one to the state element's counter at `offset` (r7 holds the element).
  auto count = [&a](int16_t offset) {
    a.mov(BPF_REG_1, 1);
    a.atomic(BPF_ADD, BPF_REG_7, offset, BPF_REG_1);
  };
  // Sets the SYN's bits (r9) in the current generation's word of the element r0 points to.
  auto record = [&a] {
    a.load(BPF_W, BPF_REG_1, BPF_REG_7, state_current);
    a.alu(BPF_AND, BPF_REG_1, 1);
    a.alu(BPF_LSH, BPF_REG_1, 3);
    a.alu_reg(BPF_ADD, BPF_REG_0, BPF_REG_1);
    a.atomic(BPF_OR, BPF_REG_0, 0, BPF_REG_9);
  };
  a.mov_reg(BPF_REG_6, BPF_REG_1);  // the skb, kept across calls
  // Shorter than 40 bytes: not judged.
  a.mov_reg(BPF_REG_1, BPF_REG_6);
  a.mov(BPF_REG_2, 0);
  a.mov_reg(BPF_REG_3, BPF_REG_10);
  a.alu(BPF_ADD, BPF_REG_3, packet_at);
  a.mov(BPF_REG_4, packet_bytes);
  a.call(BPF_FUNC_skb_load_bytes);
  a.jump_if(BPF_JNE, BPF_REG_0, 0, pass);
  // r7 = the state element; inactive: pass.
  a.store_imm(BPF_W, BPF_REG_10, state_key_at, 0);
  a.load_map(BPF_REG_1, state_fd);
  a.mov_reg(BPF_REG_2, BPF_REG_10);
  a.alu(BPF_ADD, BPF_REG_2, state_key_at);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_if(BPF_JEQ, BPF_REG_0, 0, pass);
  a.mov_reg(BPF_REG_7, BPF_REG_0);
  a.load(BPF_W, BPF_REG_1, BPF_REG_7, state_active);
  a.jump_if(BPF_JEQ, BPF_REG_1, 0, pass);
  // IPv4 without options, TCP, not a fragment (MF clear, offset 0), flags SYN alone.
  a.load(BPF_B, BPF_REG_1, BPF_REG_10, byte_at(0));
  a.jump_if(BPF_JNE, BPF_REG_1, 0x45, pass);
  a.load(BPF_B, BPF_REG_1, BPF_REG_10, byte_at(9));
  a.jump_if(BPF_JNE, BPF_REG_1, 6, pass);
  a.load(BPF_B, BPF_REG_1, BPF_REG_10, byte_at(6));
  a.alu(BPF_AND, BPF_REG_1, 0x3f);
  a.jump_if(BPF_JNE, BPF_REG_1, 0, pass);
  a.load(BPF_B, BPF_REG_1, BPF_REG_10, byte_at(7));
  a.jump_if(BPF_JNE, BPF_REG_1, 0, pass);
  a.load(BPF_B, BPF_REG_1, BPF_REG_10, byte_at(33));
  a.alu(BPF_AND, BPF_REG_1, 0x17);  // FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10
  a.jump_if(BPF_JNE, BPF_REG_1, 0x02, pass);
  count(state_judged);
  // r8 = hash(bytes 12..19, bytes 20..27) under the key: multiply-xorshift rounds.
  a.load(BPF_DW, BPF_REG_8, BPF_REG_10, byte_at(12));
  a.load(BPF_DW, BPF_REG_9, BPF_REG_10, byte_at(20));
  a.load_imm64(BPF_REG_1, key0);
  a.alu_reg(BPF_XOR, BPF_REG_8, BPF_REG_1);
  a.load_imm64(BPF_REG_1, hash_multiplier);
  a.alu_reg(BPF_MUL, BPF_REG_8, BPF_REG_1);
  a.mov_reg(BPF_REG_2, BPF_REG_8);
  a.alu(BPF_RSH, BPF_REG_2, 32);
  a.alu_reg(BPF_XOR, BPF_REG_8, BPF_REG_2);
  a.alu_reg(BPF_XOR, BPF_REG_8, BPF_REG_9);
  a.load_imm64(BPF_REG_2, key1);
  a.alu_reg(BPF_XOR, BPF_REG_8, BPF_REG_2);
  a.alu_reg(BPF_MUL, BPF_REG_8, BPF_REG_1);
  a.mov_reg(BPF_REG_2, BPF_REG_8);
  a.alu(BPF_RSH, BPF_REG_2, 29);
  a.alu_reg(BPF_XOR, BPF_REG_8, BPF_REG_2);
  a.alu_reg(BPF_MUL, BPF_REG_8, BPF_REG_1);
  a.mov_reg(BPF_REG_2, BPF_REG_8);
  a.alu(BPF_RSH, BPF_REG_2, 32);
  a.alu_reg(BPF_XOR, BPF_REG_8, BPF_REG_2);
  // The element: the low words_log2 bits. r9 = its two bits: bits 40-45 and 52-57.
  a.mov_reg(BPF_REG_2, BPF_REG_8);
  a.alu(BPF_AND, BPF_REG_2, static_cast<int32_t>((uint32_t{1} << words_log2) - 1));
  a.store(BPF_W, BPF_REG_10, bits_key_at, BPF_REG_2);
  a.mov(BPF_REG_9, 1);
  a.mov_reg(BPF_REG_2, BPF_REG_8);
  a.alu(BPF_RSH, BPF_REG_2, 40);
  a.alu(BPF_AND, BPF_REG_2, 63);
  a.alu_reg(BPF_LSH, BPF_REG_9, BPF_REG_2);
  a.mov(BPF_REG_3, 1);
  a.mov_reg(BPF_REG_2, BPF_REG_8);
  a.alu(BPF_RSH, BPF_REG_2, 52);
  a.alu(BPF_AND, BPF_REG_2, 63);
  a.alu_reg(BPF_LSH, BPF_REG_3, BPF_REG_2);
  a.alu_reg(BPF_OR, BPF_REG_9, BPF_REG_3);
  a.load_map(BPF_REG_1, bits_fd);
  a.mov_reg(BPF_REG_2, BPF_REG_10);
  a.alu(BPF_ADD, BPF_REG_2, bits_key_at);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_if(BPF_JEQ, BPF_REG_0, 0, pass);
  // Seen in either generation: both bits set in its word.
  for (int16_t generation : {int16_t{0}, int16_t{8}}) {
    a.load(BPF_DW, BPF_REG_1, BPF_REG_0, generation);
    a.alu_reg(BPF_AND, BPF_REG_1, BPF_REG_9);
    a.jump_if_reg(BPF_JEQ, BPF_REG_1, BPF_REG_9, seen);
  }
  // Not seen: recorded in the current generation, counted, dropped.
  record();
  count(state_first_dropped);
  a.mov(BPF_REG_0, 0);
  a.exit();
  // Seen: recorded again (a third copy still finds it), counted, passed.
  a.bind(seen);
  record();
  count(state_retx_passed);
  // Pass: keep the whole packet.
  a.bind(pass);
  a.load(BPF_W, BPF_REG_0, BPF_REG_6, offsetof(__sk_buff, len));
  a.exit();
  return a.finish();
}

std::unique_ptr<TunSynCheck> TunSynCheck::create(TunSynCheckConfig config, std::string& why) {
  if (config.words_log2 < 6 || config.words_log2 > 24) {
    why = "tun syn check: words_log2 must be 6-24";
    return nullptr;
  }
  if (config.generation_ms == 0) {
    why = "tun syn check: generation_ms must be positive";
    return nullptr;
  }
  std::unique_ptr<TunSynCheck> check(new TunSynCheck(config));
  const uint32_t elements = uint32_t{1} << config.words_log2;
  check->state_fd_ = create_array(state_value_bytes, 1, why);
  if (check->state_fd_ < 0) return nullptr;
  check->bits_fd_ = create_array(bits_value_bytes, elements, why);
  if (check->bits_fd_ < 0) return nullptr;
  check->state_bytes_ = page_rounded(state_value_bytes);
  check->state_ = static_cast<TunSynCheckState*>(map_memory(check->state_fd_, check->state_bytes_, why));
  if (check->state_ == nullptr) return nullptr;
  check->bits_bytes_ = page_rounded(size_t{bits_value_bytes} * elements);
  check->bits_ = static_cast<uint64_t*>(map_memory(check->bits_fd_, check->bits_bytes_, why));
  if (check->bits_ == nullptr) return nullptr;

  uint64_t key[2];
  randombytes_buf(key, sizeof key);
  const auto program = tun_syn_check_program(check->state_fd_, check->bits_fd_, key[0], key[1], config.words_log2);
  sodium_memzero(key, sizeof key);
  // The kernel reads the license only to allow GPL-only helpers, and this program calls
  // none (skb_load_bytes and map lookups are open to every program).
  static const char license[] = "none";
  std::vector<char> log(64 * 1024);
  for (int attempt = 0; attempt < 2; ++attempt) {
    bpf_attr attr{};
    attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    attr.insns = reinterpret_cast<uint64_t>(program.data());
    attr.insn_cnt = static_cast<uint32_t>(program.size());
    attr.license = reinterpret_cast<uint64_t>(license);
    if (attempt == 1) {  // again with the verifier's log, to say why
      attr.log_buf = reinterpret_cast<uint64_t>(log.data());
      attr.log_size = static_cast<uint32_t>(log.size());
      attr.log_level = 1;
    }
    const long fd = bpf(BPF_PROG_LOAD, attr);
    if (fd >= 0) {
      check->program_fd_ = static_cast<int>(fd);
      return check;
    }
    why = std::string("bpf program: ") + std::strerror(errno);
    if (errno == EPERM) return nullptr;
  }
  log.back() = '\0';
  const std::string text(log.data());
  why += ": " + text.substr(text.size() > 600 ? text.size() - 600 : 0);
  return nullptr;
}

TunSynCheck::~TunSynCheck() {
  if (bits_ != nullptr) munmap(bits_, bits_bytes_);
  if (state_ != nullptr) munmap(state_, state_bytes_);
  for (int fd : {program_fd_, bits_fd_, state_fd_})
    if (fd >= 0) ::close(fd);
}

bool TunSynCheck::attach(int tun_fd, std::string& why) {
  int fd = program_fd_;
  if (ioctl(tun_fd, TUNSETFILTEREBPF, &fd) < 0) {
    why = std::string("TUNSETFILTEREBPF: ") + std::strerror(errno);
    return false;
  }
  return true;
}

void TunSynCheck::detach(int tun_fd) { detach_any(tun_fd); }

void TunSynCheck::detach_any(int tun_fd) {
  int none = -1;
  (void)ioctl(tun_fd, TUNSETFILTEREBPF, &none);  // nothing attached, or an old kernel: nothing to undo
}

void TunSynCheck::set_active(bool active) { __atomic_store_n(&state_->active, active ? 1u : 0u, __ATOMIC_RELAXED); }

bool TunSynCheck::active() const { return __atomic_load_n(&state_->active, __ATOMIC_RELAXED) != 0; }

void TunSynCheck::advance(uint64_t now_ms) {
  if (!started_) {
    started_ = true;
    generation_started_ms_ = now_ms;
    return;
  }
  if (now_ms < generation_started_ms_ + config_.generation_ms) return;
  const size_t elements = size_t{1} << config_.words_log2;
  // Two generations or more without a rotation: nothing recorded is recent, clear both.
  const bool stale = now_ms >= generation_started_ms_ + 2 * config_.generation_ms;
  const uint32_t older = __atomic_load_n(&state_->current, __ATOMIC_RELAXED) ^ 1u;
  for (size_t i = 0; i < elements; ++i) {
    __atomic_store_n(&bits_[2 * i + older], 0, __ATOMIC_RELAXED);
    if (stale) __atomic_store_n(&bits_[2 * i + (older ^ 1u)], 0, __ATOMIC_RELAXED);
  }
  __atomic_store_n(&state_->current, older, __ATOMIC_RELAXED);
  generation_started_ms_ = stale ? now_ms : generation_started_ms_ + config_.generation_ms;
}

TunSynCheckCounters TunSynCheck::counters() const {
  return {__atomic_load_n(&state_->judged, __ATOMIC_RELAXED), __atomic_load_n(&state_->first_dropped, __ATOMIC_RELAXED),
          __atomic_load_n(&state_->retx_passed, __ATOMIC_RELAXED)};
}

bool TunSynCheck::judges(std::span<const uint8_t> packet) {
  return packet.size() >= static_cast<size_t>(packet_bytes) && packet[0] == 0x45 && packet[9] == 6 &&
         (packet[6] & 0x3f) == 0 && packet[7] == 0 && (packet[33] & 0x17) == 0x02;
}

}  // namespace roam
