#include "stack/migrate/resume_alignment.hpp"

#include <algorithm>

namespace roam::migrate {

Result<AlignedResume, std::string> align_to_client(const wire::ConnectionSnapshot& checkpointed,
                                                   const ClientSequenceView& view) {
  if (!checkpointed.unacked.empty() || !checkpointed.unsent.empty() || !checkpointed.received.empty() ||
      checkpointed.send.snd_una != checkpointed.send.snd_nxt)
    return unexpected(std::string("the checkpoint holds queued bytes"));
  // Differences in sequence space, mod 2^32, as signed distances.
  const int64_t send_shift = static_cast<int32_t>(view.rcv_nxt - checkpointed.send.snd_nxt);
  const int64_t receive_shift = static_cast<int32_t>(view.snd_una - checkpointed.receive.rcv_nxt);
  const int64_t in_flight = static_cast<int32_t>(view.snd_nxt - view.snd_una);
  if (send_shift > max_resume_shift || send_shift < -max_resume_shift || receive_shift > max_resume_shift ||
      receive_shift < -max_resume_shift || in_flight < 0 || in_flight > max_resume_shift)
    return unexpected(std::string("the client's sequence view is too far from the checkpoint"));
  AlignedResume out;
  out.snapshot = checkpointed;
  out.send_shift = send_shift;
  out.receive_shift = receive_shift;
  wire::SnapshotSendState& send = out.snapshot.send;
  send.snd_una = send.snd_nxt = view.rcv_nxt;
  send.snd_wl1 = view.snd_una;  // the client's last segment as the window's source
  send.snd_wl2 = view.rcv_nxt;
  if (send.mss != 0) send.cwnd = std::min<uint32_t>(send.cwnd, 4u * send.mss);
  wire::SnapshotReceiveState& receive = out.snapshot.receive;
  receive.rcv_nxt = view.snd_una;
  receive.rcv_ann_right_edge = view.snd_una + receive.rcv_ann_wnd;
  if (auto valid = wire::validate_snapshot(out.snapshot); !valid)
    return unexpected(std::string("aligned snapshot invalid: ") + wire::snapshot_error_name(valid.error()));
  return out;
}

}  // namespace roam::migrate
