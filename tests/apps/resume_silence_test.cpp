// When roam-client takes a server for dead (PROTOCOL.md 14.5, apps/resume_silence): the
// silence since the last segment, cut short by the client's closed window or a resume;
// never a server that sent its FIN (the spurious second takeover of PROTOCOL.md 14.7).
#include "apps/resume_silence.hpp"

#include <doctest/doctest.h>

namespace {

using roam::server_silence_ms;
using roam::ServerSilence;

}  // namespace

TEST_CASE("resume silence: counted from the last segment, or from a later closed window or resume") {
  ServerSilence v;
  v.since_segment_ms = 1500;
  CHECK(server_silence_ms(v) == 1500u);
  v.since_window_closed_ms = 400;  // the client's app kept its window closed until 400 ms ago
  CHECK(server_silence_ms(v) == 400u);
  v.since_resumed_ms = 200;  // re-pointed 200 ms ago: the new server could not speak before
  CHECK(server_silence_ms(v) == 200u);
  v.since_window_closed_ms = 5000;  // an older closed window does not lengthen the silence
  v.since_resumed_ms = 3000;
  CHECK(server_silence_ms(v) == 1500u);
}

TEST_CASE("resume silence: a server whose FIN arrived is never taken for dead") {
  // The paced reader of netns_roaming_takeover holds seconds of the file in the client's
  // buffers after the server's FIN: the server is silent, with the client's window open.
  ServerSilence v;
  v.server_finished = true;
  v.since_segment_ms = 60'000;
  CHECK_FALSE(server_silence_ms(v).has_value());
  v.since_window_closed_ms = 30'000;
  v.since_resumed_ms = 20'000;
  CHECK_FALSE(server_silence_ms(v).has_value());
}
