// HandoverResponder (stack/migrate/handover_responder) as a state machine fed the time: no
// loop runs, the test picks every time (with each SYN, and for on_time). An expected
// handover nobody claims is forgotten after unclaimed_for_ms; an answered one keeps being
// answered for answered_for_ms after its SYN, then is forgotten.
#include "stack/migrate/handover_responder.hpp"

#include <doctest/doctest.h>

#include <cstdint>

#include "crypto/handover_mac.hpp"
#include "stack/lwip.hpp"
#include "support/inbound_packet.hpp"

namespace {

using namespace roam;
using migrate::HandoverResponder;

const IpAddress client = *IpAddress::parse("198.18.11.2");
const IpAddress server = *IpAddress::parse("198.18.13.2");
constexpr uint64_t id = 0x1122334455667788;

struct ResponderLab {
  testing::BareNode bare;
  tcp_pcb* pcb = tcp_new();  // the parked import the rebind hands back
  int rebinds = 0;
  HandoverResponder responder{*bare.node, true, [this](const FlowKey&, const IpAddress&, uint16_t) {
                                ++rebinds;
                                return pcb;
                              }};
  crypto::HandoverToken token = crypto::random_handover_token();
  FlowKey parked{server, client, 7000, 40000};

  ResponderLab() { REQUIRE(pcb != nullptr); }
  ~ResponderLab() { tcp_close(pcb); }

  // The client's synthetic SYN for `id`, arriving at `now_ms`.
  FilterVerdict syn(uint64_t now_ms, uint16_t from_port = 40000) {
    wire::HandoverSegment s;
    s.src = client;
    s.dst = server;
    s.src_port = from_port;
    s.dst_port = 7000;
    s.seq = 1000;
    s.option.connection_id = id;
    s.option.rcv_nxt = 5000;
    s.option.tag = crypto::handover_tag(token, {crypto::HandoverSegmentKind::syn, id, s.seq, 0, 5000});
    auto packet = testing::inbound_packet(testing::handover_packet(s), now_ms);
    return responder.on_input(packet->packet);
  }
};

TEST_CASE("an unclaimed handover is forgotten unclaimed_for_ms after it was expected") {
  ResponderLab r;
  CHECK(r.responder.on_time(0) == UINT64_MAX);
  r.responder.expect(id, r.token, r.parked, 0, 1000);
  CHECK(r.responder.on_time(1000) == 1000 + HandoverResponder::unclaimed_for_ms);
  CHECK(r.responder.on_time(1000 + HandoverResponder::unclaimed_for_ms - 1) ==
        1000 + HandoverResponder::unclaimed_for_ms);
  CHECK(r.responder.expected_count() == 1);
  CHECK(r.responder.on_time(1000 + HandoverResponder::unclaimed_for_ms) == UINT64_MAX);
  CHECK(r.responder.expected_count() == 0);
  // Too late now: its SYN is unknown and rebinds nothing.
  CHECK(r.syn(1000 + HandoverResponder::unclaimed_for_ms) == FilterVerdict::drop);
  CHECK(r.responder.counters().syns_unknown == 1);
  CHECK(r.rebinds == 0);
}

TEST_CASE("a handover expected without a time is counted from the next on_time") {
  ResponderLab r;
  r.responder.expect(id, r.token, r.parked, 0);  // as the Importer does
  CHECK(r.responder.on_time(50'000) == 50'000 + HandoverResponder::unclaimed_for_ms);
  CHECK(r.responder.on_time(50'000 + HandoverResponder::unclaimed_for_ms) == UINT64_MAX);
  CHECK(r.responder.expected_count() == 0);
}

TEST_CASE("an answered handover is answered again for answered_for_ms after its SYN, then forgotten") {
  ResponderLab r;
  r.responder.expect(id, r.token, r.parked, 0, 1000);
  CHECK(r.responder.on_time(1000) == 1000 + HandoverResponder::unclaimed_for_ms);
  CHECK(r.syn(2000) == FilterVerdict::drop);  // ours: answered, never for lwIP
  CHECK(r.responder.counters().syns_accepted == 1);
  CHECK(r.rebinds == 1);
  // The answer's deadline comes before the unclaimed one.
  CHECK(r.responder.on_time(2000) == 2000 + HandoverResponder::answered_for_ms);
  CHECK(r.syn(2000 + HandoverResponder::answered_for_ms - 1) == FilterVerdict::drop);
  CHECK(r.responder.counters().syns_repeated == 1);
  CHECK(r.responder.on_time(2000 + HandoverResponder::answered_for_ms) == UINT64_MAX);
  CHECK(r.responder.expected_count() == 0);
  CHECK(r.syn(2000 + HandoverResponder::answered_for_ms) == FilterVerdict::drop);
  CHECK(r.responder.counters().syns_unknown == 1);
  CHECK(r.responder.counters().syns_repeated == 1);
  CHECK(r.rebinds == 1);
}

TEST_CASE("a forgotten handover's deadline changes nothing; expected anew, it gets a new one") {
  ResponderLab r;
  r.responder.expect(id, r.token, r.parked, 0, 1000);
  r.responder.forget(id);
  CHECK(r.syn(1500) == FilterVerdict::drop);
  CHECK(r.responder.counters().syns_unknown == 1);
  r.responder.expect(id, r.token, r.parked, 0, 5000);
  // The first deadline comes up stale: the entry is due again at its own.
  CHECK(r.responder.on_time(1000 + HandoverResponder::unclaimed_for_ms) == 5000 + HandoverResponder::unclaimed_for_ms);
  CHECK(r.responder.expected_count() == 1);
  CHECK(r.responder.on_time(5000 + HandoverResponder::unclaimed_for_ms) == UINT64_MAX);
  CHECK(r.responder.expected_count() == 0);
}

}  // namespace
