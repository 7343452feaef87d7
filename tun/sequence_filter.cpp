#include "tun/sequence_filter.hpp"

#include <algorithm>

namespace roam {
namespace {

// A UDP socket's filter reads from the UDP header: the inner IP packet starts after it.
constexpr uint32_t inner = 8;
constexpr uint32_t accept_all = 0xFFFFFFFFu;
constexpr uint32_t drop = 0;
// TCP data offset (high nibble) at which a handover option fits: 5 + 28 / 4 words.
constexpr uint32_t room_for_handover_option = 12u << 4;
// Scratch memory slots (M[]) for the fields every flow compares.
constexpr uint32_t scratch_source = 0;
constexpr uint32_t scratch_destination = 1;
constexpr uint32_t scratch_ports = 2;
constexpr uint32_t scratch_sequence = 3;

sock_filter statement(uint16_t code, uint32_t k) {
  return sock_filter{code, 0, 0, k};
}
sock_filter jump(uint16_t code, uint32_t k, uint8_t if_true, uint8_t if_false) {
  return sock_filter{code, if_true, if_false, k};
}

// Makes every header check's "not ours to judge" branch (marked with 0xFF) land on the
// accept instruction at `accept_at`.
void patch_to_accept(std::vector<sock_filter>& program, size_t accept_at) {
  for (size_t at = 0; at < program.size(); ++at) {
    auto distance = static_cast<uint8_t>(accept_at - at - 1);
    if (program[at].jt == 0xFF) program[at].jt = distance;
    if (program[at].jf == 0xFF) program[at].jf = distance;
  }
}

}  // namespace

std::vector<sock_filter> build_sequence_filter(std::span<const SequenceFilterFlow> flows) {
  constexpr uint8_t to_accept = 0xFF;  // patched below
  std::vector<sock_filter> p;
  // The kernel's checker follows the program in a straight line and forgets, past the
  // accept below, that every way into the flows stored the fields: set them first.
  p.push_back(statement(BPF_LD | BPF_IMM, 0));
  for (uint32_t slot : {scratch_source, scratch_destination, scratch_ports, scratch_sequence})
    p.push_back(statement(BPF_ST, slot));
  // Long enough for an IP header: a shorter datagram goes to userspace, which counts it
  // (a load past the end would end the program with "drop").
  p.push_back(statement(BPF_LD | BPF_W | BPF_LEN, 0));
  p.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, inner + 20, 0, to_accept));
  p.push_back(statement(BPF_LD | BPF_B | BPF_ABS, inner));
  p.push_back(statement(BPF_ALU | BPF_AND | BPF_K, 0xF0));
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 0x40, 0, to_accept));  // IPv4
  p.push_back(statement(BPF_LD | BPF_B | BPF_ABS, inner + 9));
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 6, 0, to_accept));  // TCP
  p.push_back(statement(BPF_LD | BPF_H | BPF_ABS, inner + 6));
  p.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, 0x3FFF, to_accept, 0));  // a fragment
  // X = the IP header's length; at least 20, and the datagram holds it plus a TCP header.
  p.push_back(statement(BPF_LDX | BPF_B | BPF_MSH, inner));
  p.push_back(statement(BPF_MISC | BPF_TXA, 0));
  p.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, 20, 0, to_accept));
  p.push_back(statement(BPF_ALU | BPF_ADD | BPF_K, inner + 20));
  p.push_back(statement(BPF_MISC | BPF_TAX, 0));
  p.push_back(statement(BPF_LD | BPF_W | BPF_LEN, 0));
  p.push_back(jump(BPF_JMP | BPF_JGE | BPF_X, 0, 0, to_accept));
  p.push_back(statement(BPF_LDX | BPF_B | BPF_MSH, inner));
  p.push_back(statement(BPF_LD | BPF_B | BPF_IND, inner + 13));
  p.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, 0x02, to_accept, 0));  // SYN
  p.push_back(statement(BPF_LD | BPF_B | BPF_IND, inner + 12));
  p.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, room_for_handover_option, to_accept, 0));
  // The fields every flow compares, loaded once into scratch memory: a packet load costs
  // the kernel several instructions once converted (bounds checks), a scratch load one,
  // and the kernel charges and converts a filter by its converted size (a 64-flow
  // program of packet loads took ~0.9 ms to install and could not replace itself
  // within optmem_max).
  p.push_back(statement(BPF_LD | BPF_W | BPF_ABS, inner + 12));
  p.push_back(statement(BPF_ST, scratch_source));
  p.push_back(statement(BPF_LD | BPF_W | BPF_ABS, inner + 16));
  p.push_back(statement(BPF_ST, scratch_destination));
  p.push_back(statement(BPF_LD | BPF_W | BPF_IND, inner + 0));
  p.push_back(statement(BPF_ST, scratch_ports));
  p.push_back(statement(BPF_LD | BPF_W | BPF_IND, inner + 4));
  p.push_back(statement(BPF_ST, scratch_sequence));
  p.push_back(statement(BPF_JMP | BPF_JA, 1));
  const size_t accept_at = p.size();
  p.push_back(statement(BPF_RET | BPF_K, accept_all));
  patch_to_accept(p, accept_at);

  // Per flow (11 instructions; a mismatch jumps to the next flow): the 4-tuple, then the
  // sequence number's distance from `first`.
  const size_t count = std::min(flows.size(), sequence_filter_max_flows);
  for (const auto& flow : flows.first(count)) {
    const uint32_t ports = (uint32_t{flow.source_port} << 16) | flow.destination_port;
    p.push_back(statement(BPF_LD | BPF_MEM, scratch_source));
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, flow.source, 0, 9));
    p.push_back(statement(BPF_LD | BPF_MEM, scratch_destination));
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, flow.destination, 0, 7));
    p.push_back(statement(BPF_LD | BPF_MEM, scratch_ports));
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, ports, 0, 5));
    p.push_back(statement(BPF_LD | BPF_MEM, scratch_sequence));
    p.push_back(statement(BPF_ALU | BPF_SUB | BPF_K, flow.first));
    p.push_back(jump(BPF_JMP | BPF_JGT | BPF_K, flow.span, 0, 1));
    p.push_back(statement(BPF_RET | BPF_K, drop));
    p.push_back(statement(BPF_RET | BPF_K, accept_all));
  }
  p.push_back(statement(BPF_RET | BPF_K, accept_all));
  return p;
}

}  // namespace roam
