// HandoverInitiator (stack/migrate/handover_initiator) as a state machine fed the time:
// the lab's lwIP holds the client's connection, but no loop runs while the test feeds the
// times (to start, to on_time, with each SYN-ACK) and reads the SYN schedule back.
#include "stack/migrate/handover_initiator.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "crypto/handover_mac.hpp"
#include "lwip/priv/tcp_priv.h"
#include "stack/connection_id.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "support/inbound_packet.hpp"
#include "support/lwip_lab.hpp"

namespace {

using namespace roam;
using migrate::HandoverInitiator;

// The client's connection to A, pointed at B without a restart (as after an ACM).
struct InitiatorLab {
  testing::PeerLab lab{4};
  std::vector<std::pair<FlowKey, bool>> done;
  HandoverInitiator initiator{*lab.node, [this](const FlowKey& f, bool answered) { done.emplace_back(f, answered); }};
  crypto::HandoverToken token = crypto::random_handover_token();
  tcp_pcb* pcb = nullptr;
  uint64_t id = 0;
  FlowKey flow;

  InitiatorLab() {
    lab.connect();
    pcb = lab.client.connection->pcb();
    id = connection_id(pcb);
    REQUIRE(id != 0);
    tcp_pcb* pcbs[] = {pcb};
    migrate::rewrite_remote(pcbs, lab.b(), 0, false);
    flow = flow_of(pcb);
  }

  // B's answer to the SYN at `syn_seq`, arriving at `now_ms`.
  FilterVerdict synack(uint32_t syn_seq, uint64_t now_ms, bool forge = false) {
    wire::HandoverSegment s;
    s.src = lab.b();
    s.dst = lab.c();
    s.src_port = testing::lab_port;
    s.dst_port = pcb->local_port;
    s.syn_ack = true;
    s.seq = 777;
    s.ack = syn_seq + 1;
    s.option.connection_id = id;
    s.option.rcv_nxt = 4242;
    s.option.tag = crypto::handover_tag(token, {crypto::HandoverSegmentKind::syn_ack, id, s.seq, s.ack, 4242});
    if (forge) s.option.tag[0] ^= 1;
    auto packet = testing::inbound_packet(testing::handover_packet(s), now_ms);
    return initiator.on_input(packet->packet);
  }

  // Lets the Node run what the initiator deferred (its `done`).
  void settle() {
    lab.run([this] { return !done.empty(); }, 3);
  }
};

TEST_CASE("an unanswered handover repeats its SYN with backoff, then gives up and says so") {
  InitiatorLab t;
  const uint64_t t0 = 10'000;
  REQUIRE(t.initiator.start(t.pcb, t.id, t.token, t0));
  CHECK(t.initiator.counters().syns_sent == 1);
  CHECK(t.initiator.is_pending(t.flow));
  CHECK(t.initiator.next_deadline() == t0 + HandoverInitiator::first_retry_ms);
  // 50 ms, doubling, at most max_retry_ms: max_syns SYNs in all.
  const uint64_t intervals[] = {50, 100, 200, 400, 800, 1000, 1000};
  static_assert(std::size(intervals) == HandoverInitiator::max_syns - 1);
  uint64_t at = t0;
  uint64_t syns = 1;
  for (uint64_t interval : intervals) {
    at += interval;
    CHECK(t.initiator.on_time(at - 1) == at);  // not yet
    CHECK(t.initiator.counters().syns_sent == syns);
    uint64_t next = t.initiator.on_time(at);
    CHECK(t.initiator.counters().syns_sent == ++syns);
    CHECK(next == at + std::min<uint64_t>(2 * interval, HandoverInitiator::max_retry_ms));
  }
  CHECK(t.initiator.counters().syn_retries == HandoverInitiator::max_syns - 1);
  // The last SYN gets its interval too; then the handover is given up.
  at += HandoverInitiator::max_retry_ms;
  CHECK(t.initiator.on_time(at) == UINT64_MAX);
  CHECK(t.initiator.counters().syns_sent == HandoverInitiator::max_syns);
  CHECK(t.initiator.counters().handovers_failed == 1);
  CHECK_FALSE(t.initiator.is_pending(t.flow));
  CHECK(t.done.empty());  // reported from the loop, never inside on_time
  t.settle();
  REQUIRE(t.done.size() == 1);
  CHECK(t.done.front() == std::make_pair(t.flow, false));
}

TEST_CASE("the connection's own segments are held while its SYN is out") {
  InitiatorLab t;
  REQUIRE(t.initiator.start(t.pcb, t.id, t.token, 0));
  t.lab.client.send("held");
  CHECK(t.initiator.counters().output_held >= 1);
}

TEST_CASE("a SYN-ACK that answers the SYN ends the handover; its answer time paces the next first retry") {
  InitiatorLab t;
  const uint32_t syn_seq = t.pcb->snd_nxt - 1;
  REQUIRE(t.initiator.start(t.pcb, t.id, t.token, 1000));
  CHECK(t.synack(syn_seq, 1030, true) == FilterVerdict::drop);  // a bad tag
  CHECK(t.initiator.counters().synacks_forged == 1);
  CHECK(t.initiator.is_pending(t.flow));
  CHECK(t.initiator.next_deadline() == 1050);
  CHECK(t.synack(syn_seq, 1030) == FilterVerdict::drop);  // ours, never for lwIP
  CHECK(t.initiator.counters().synacks_accepted == 1);
  CHECK(t.initiator.counters().window_acks_sent == 1);
  CHECK_FALSE(t.initiator.is_pending(t.flow));
  CHECK(t.initiator.next_deadline() == UINT64_MAX);
  CHECK(t.initiator.on_time(1050) == UINT64_MAX);  // its old deadline sends nothing
  CHECK(t.initiator.counters().syns_sent == 1);
  t.settle();
  REQUIRE(t.done.size() == 1);
  CHECK(t.done.front() == std::make_pair(t.flow, true));
  // Answered in 30 ms: the next handover's first retry waits four answer times.
  REQUIRE(t.initiator.start(t.pcb, t.id, t.token, 5000));
  CHECK(t.initiator.next_deadline() == 5000 + 4 * 30);
}

TEST_CASE("a handover whose connection ended is given up at its next deadline") {
  InitiatorLab t;
  REQUIRE(t.initiator.start(t.pcb, t.id, t.token, 0));
  tcp_abort(t.pcb);  // the connection's err callback forgets the pcb
  CHECK(t.initiator.on_time(HandoverInitiator::first_retry_ms) == UINT64_MAX);
  CHECK(t.initiator.counters().handovers_failed == 1);
  CHECK(t.initiator.counters().syns_sent == 1);
  t.settle();
  REQUIRE(t.done.size() == 1);
  CHECK_FALSE(t.done.front().second);
}

}  // namespace
