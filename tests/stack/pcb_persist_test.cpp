// lwIP's persist timer on a connection whose unsent head starts before lastack: the state
// an imported connection is in when the peer acknowledges part of a TSO-sized segment the
// old host had sent, before the new host sent it again (stack/migrate/pcb_migration.cpp).
// With a window smaller than the part already acknowledged, lwIP split the head at the
// window counted from its first byte: the new head was acknowledged entirely, never fit
// the window again and was never freed (no new ACK could come), and the connection stalled
// until the dead-peer timeout (netns_tun_migrate, 1 run in 6). cmake/LwipPatches.cmake,
// patch "persist split".
#include <doctest/doctest.h>

#include "lwip/priv/tcp_priv.h"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using roam::testing::pattern;

constexpr LinkOffloads tso{65435, true};


uint32_t head_end(const tcp_pcb* pcb) {
  return lwip_ntohl(pcb->unsent->tcphdr->seqno) + pcb->unsent->len;
}

TEST_CASE("persist timer: a head partly acknowledged beyond the window still goes out") {
  roam::testing::BufferAutotune fixed(false, false);  // one TSO-sized segment, whatever the load
  roam::testing::PeerLab lab(4, tso);
  lab.connect();
  tcp_pcb* pcb = lab.server.connection->pcb();
  REQUIRE(pcb != nullptr);

  // Queue 60000 bytes without sending them: one multi-MSS segment on unsent.
  auto bytes = pattern(60000, 3);
  REQUIRE(tcp_write(pcb, bytes.data(), static_cast<u16_t>(bytes.size()), TCP_WRITE_FLAG_COPY) == ERR_OK);
  REQUIRE(pcb->unsent != nullptr);
  REQUIRE(pcb->unsent->next == nullptr);
  REQUIRE(pcb->unsent->len == bytes.size());
  REQUIRE(pcb->unacked == nullptr);

  // What tcp_receive leaves after an ACK for 37544 of those bytes, sent by the connection's
  // old host: lastack moves, the partly acknowledged head stays on unsent. The peer's
  // window is one unit at its scale (a reader that fell behind).
  const uint32_t acknowledged = 37544;
  pcb->lastack += acknowledged;
  pcb->snd_nxt = pcb->lastack;
  pcb->snd_wl2 = pcb->lastack;
  pcb->snd_wnd = 128;
  pcb->cwnd = 64 * pcb->mss;

  // The rest of the head (22456 bytes) does not fit a 128-byte window: persist starts.
  tcp_output(pcb);
  CHECK(pcb->snd_nxt == pcb->lastack);
  REQUIRE(pcb->persist_backoff > 0);

  // Let the persist timer fire (its first slot is 3 slow-timer ticks, 1.5 s); nothing
  // reaches the peer, so nothing changes lastack meanwhile.
  lab.lose = [](std::span<const uint8_t>) { return true; };
  const uint8_t backoff_before = pcb->persist_backoff;
  lab.run([&] { return pcb->persist_backoff != backoff_before || pcb->snd_nxt != pcb->lastack; });

  // The head that remains on unsent must still hold bytes the peer has not acknowledged,
  // and once the window opens, they go out.
  REQUIRE(pcb->unsent != nullptr);
  CHECK(TCP_SEQ_GT(head_end(pcb), pcb->lastack));
  pcb->snd_wnd = 600000;
  tcp_output(pcb);
  CHECK(TCP_SEQ_GT(pcb->snd_nxt, pcb->lastack));
  lab.lose = nullptr;
}

}  // namespace
