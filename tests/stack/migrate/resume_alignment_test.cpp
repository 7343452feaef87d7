// Aligning a checkpoint to the client's view of the sequence space (PROTOCOL.md 14.5):
// the shifts, the moved sequence numbers, and refusals of queued checkpoints and of views
// too far away to be the same connection.
#include "stack/migrate/resume_alignment.hpp"

#include <doctest/doctest.h>

#include "support/checkpoint_snapshot.hpp"

namespace {

using namespace roam;
using migrate::ClientSequenceView;

wire::ConnectionSnapshot checkpointed() {
  wire::ConnectionSnapshot s = testing::checkpoint_snapshot(0xfffff000u, 0x9001);  // wraps during the test
  s.local_address = *IpAddress::parse("198.18.12.2");
  s.remote_address = *IpAddress::parse("198.18.0.2");
  s.connection_id = 77;
  s.send.cwnd = 100000;
  s.app_state = {1, 2, 3};
  return s;
}

}  // namespace

TEST_CASE("a resume takes the client's sequence numbers and reports how far the app must move") {
  ClientSequenceView view{0x00000800u, 0x9001, 0x9001};  // received 0x1800 bytes past the checkpoint
  auto aligned = migrate::align_to_client(checkpointed(), view);
  REQUIRE(aligned.has_value());
  CHECK(aligned->send_shift == 0x1800);
  CHECK(aligned->receive_shift == 0);
  CHECK(aligned->snapshot.send.snd_una == 0x800u);
  CHECK(aligned->snapshot.send.snd_nxt == 0x800u);
  CHECK(aligned->snapshot.receive.rcv_nxt == 0x9001u);
  CHECK(aligned->snapshot.receive.rcv_ann_right_edge == 0x9001u + 65535);
  CHECK(aligned->snapshot.send.cwnd == 4 * 1460);
  CHECK(aligned->snapshot.app_state == std::vector<uint8_t>{1, 2, 3});
  CHECK(aligned->snapshot.connection_id == 77);
}

TEST_CASE("a client behind the checkpoint gets a negative shift; its unacknowledged input is retransmitted") {
  ClientSequenceView view{0xffffe000u, 0x9001, 0x9101};
  auto aligned = migrate::align_to_client(checkpointed(), view);
  REQUIRE(aligned.has_value());
  CHECK(aligned->send_shift == -0x1000);
  CHECK(aligned->snapshot.receive.rcv_nxt == 0x9001u);  // the client re-sends its 0x100 bytes
}

TEST_CASE("a checkpoint with queued bytes or a view from another connection is refused") {
  auto queued = checkpointed();
  queued.unsent = {9};
  CHECK_FALSE(migrate::align_to_client(queued, {0xfffff000u, 0x9001, 0x9001}).has_value());
  CHECK_FALSE(migrate::align_to_client(checkpointed(), {0x7ffff000u, 0x9001, 0x9001}).has_value());
  CHECK_FALSE(migrate::align_to_client(checkpointed(), {0xfffff000u, 0x80009001u, 0x80009001u}).has_value());
  CHECK_FALSE(migrate::align_to_client(checkpointed(), {0xfffff000u, 0x9001, 0x9000}).has_value());
}
