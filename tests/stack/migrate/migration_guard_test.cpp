// MigrationGuard (stack/migrate/migration_guard) as a state machine fed the time: no loop
// runs, the test picks every time. Silenced flows drop their input until their grace
// period ends, then are forgotten at the deadline on_time returns.
#include "stack/migrate/migration_guard.hpp"

#include <doctest/doctest.h>

#include <cstdint>

#include "support/inbound_packet.hpp"

namespace {

using namespace roam;
using testing::bare_ack_to;
using testing::inbound_packet;

constexpr uint64_t silence_ms = 1000;

FlowKey flow_number(uint16_t n) {
  return {*IpAddress::parse("198.18.12.2"), *IpAddress::parse("198.18.11.2"), 7000, static_cast<uint16_t>(40000 + n)};
}

FilterVerdict feed(migrate::MigrationGuard& guard, const FlowKey& flow, uint64_t now_ms) {
  auto packet = inbound_packet(bare_ack_to(flow), now_ms);
  return guard.on_input(packet->packet);
}

TEST_CASE("a silenced flow's packets are dropped until its grace period ends, then it is forgotten") {
  testing::BareNode bare;
  migrate::MigrationGuard guard(*bare.node, silence_ms);
  const FlowKey flow = flow_number(1);
  CHECK(guard.on_time(0) == UINT64_MAX);  // nothing to wait for
  guard.silence(flow, 5000);
  CHECK(guard.on_time(5000) == 5000 + silence_ms);
  CHECK(feed(guard, flow, 5500) == FilterVerdict::drop);
  CHECK(feed(guard, flow_number(2), 5500) == FilterVerdict::pass);  // another flow
  CHECK(guard.counters().silenced_input_drops == 1);
  CHECK(guard.on_time(5999) == 6000);
  CHECK(guard.is_silenced(flow));
  CHECK(guard.on_time(6000) == UINT64_MAX);
  CHECK_FALSE(guard.is_silenced(flow));
  CHECK(feed(guard, flow, 6001) == FilterVerdict::pass);
  CHECK(guard.counters().silenced_input_drops == 1);
}

TEST_CASE("a packet after the grace period passes even before on_time forgot the flow") {
  testing::BareNode bare;
  migrate::MigrationGuard guard(*bare.node, silence_ms);
  const FlowKey flow = flow_number(1);
  guard.silence(flow, 5000);
  CHECK(feed(guard, flow, 5999) == FilterVerdict::drop);
  CHECK(feed(guard, flow, 6000) == FilterVerdict::pass);  // the owner's timer is late: no matter
  CHECK_FALSE(guard.is_silenced(flow));
  CHECK(guard.on_time(6000) == UINT64_MAX);  // its stale deadline is dropped quietly
}

TEST_CASE("a flow silenced without a time starts its grace period at the next on_time") {
  testing::BareNode bare;
  migrate::MigrationGuard guard(*bare.node, silence_ms);
  const FlowKey flow = flow_number(1);
  guard.silence(flow);                                         // as the Exporter does: it holds no clock
  CHECK(feed(guard, flow, 1'000'000) == FilterVerdict::drop);  // silenced, whatever the time
  CHECK(guard.on_time(7000) == 7000 + silence_ms);
  CHECK(feed(guard, flow, 7999) == FilterVerdict::drop);
  CHECK(guard.on_time(8000) == UINT64_MAX);
  CHECK_FALSE(guard.is_silenced(flow));
}

TEST_CASE("silenced again, the later grace period wins; unsilenced, the flow passes at once") {
  testing::BareNode bare;
  migrate::MigrationGuard guard(*bare.node, silence_ms);
  const FlowKey again = flow_number(1);
  const FlowKey back = flow_number(2);
  guard.silence(again, 1000);
  guard.silence(back, 1000);
  guard.silence(again, 1500);
  guard.unsilence(back);
  CHECK(feed(guard, back, 1100) == FilterVerdict::pass);
  CHECK(guard.on_time(1100) == 2500);  // the first deadline was stale for both: dropped
  CHECK(guard.on_time(2000) == 2500);
  CHECK(guard.is_silenced(again));
  CHECK_FALSE(guard.is_silenced(back));
  CHECK(feed(guard, again, 2400) == FilterVerdict::drop);
  CHECK(guard.on_time(2500) == UINT64_MAX);
  CHECK(guard.silenced_count() == 0);
}

TEST_CASE("thousands of silenced flows expire in deadline order, each at its own time") {
  testing::BareNode bare;
  migrate::MigrationGuard guard(*bare.node, silence_ms);
  constexpr uint16_t n = 5000;
  for (uint16_t i = 0; i < n; ++i) guard.silence(flow_number(i), 10'000 + i);  // one per ms
  CHECK(guard.on_time(10'000) == 11'000);
  CHECK(guard.silenced_count() == n);
  CHECK(guard.on_time(11'000 + 2499) == 11'000 + 2500);
  CHECK(guard.silenced_count() == n - 2500);
  CHECK_FALSE(guard.is_silenced(flow_number(2499)));
  CHECK(guard.is_silenced(flow_number(2500)));
  CHECK(guard.on_time(11'000 + n - 1) == UINT64_MAX);
  CHECK(guard.silenced_count() == 0);
}

TEST_CASE("a watched flow is heard with its first packet, once") {
  testing::BareNode bare;
  migrate::MigrationGuard guard(*bare.node, silence_ms);
  const FlowKey flow = flow_number(1);
  int heard = 0;
  guard.watch(flow, [&heard] { ++heard; });
  CHECK(feed(guard, flow, 0) == FilterVerdict::pass);
  CHECK_FALSE(guard.is_watched(flow));
  bare.run_deferred();
  CHECK(feed(guard, flow, 1) == FilterVerdict::pass);
  bare.run_deferred();
  CHECK(heard == 1);
}

}  // namespace
