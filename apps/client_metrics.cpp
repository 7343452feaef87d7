#include "apps/client_metrics.hpp"

#include "stack/node_counters.hpp"

namespace roam {

void register_client_counters(CounterRegistry& r, const Node& node, const Follower* follower) {
  if (follower != nullptr) {
    const auto& c = follower->counters();
    r.add("follower", "channels_opened", &c.channels_opened);
    r.add("follower", "channels_established", &c.channels_established);
    r.add("follower", "channels_failed", &c.channels_failed);
    r.add("follower", "servers_untrusted", &c.servers_untrusted);
    r.add("follower", "frames_forged", &c.frames_forged);
    r.add("follower", "frames_replayed", &c.frames_replayed);
    r.add("follower", "frames_dropped", &c.frames_dropped);
    r.add("follower", "acms", &c.acms);
    r.add("follower", "acms_applied", &c.acms_applied);
    r.add("follower", "acms_refused", &c.acms_refused);
    r.add("follower", "acms_replayed", &c.acms_replayed);
    r.add("follower", "acms_stale", &c.acms_stale);
    r.add("follower", "acms_wrong_peer", &c.acms_wrong_peer);
    r.add("follower", "acms_unknown_connections", &c.acms_unknown_connections);
    r.add("follower", "acms_bad_address", &c.acms_bad_address);
    r.add("follower", "acms_untrusted_target", &c.acms_untrusted_target);
    r.add("follower", "unknown_ids", &c.unknown_ids);
    r.add("follower", "connections_moved", &c.connections_moved);
    r.add("follower", "registrations_sent", &c.registrations_sent);
    r.add("follower", "handovers_unstarted", &c.handovers_unstarted);
    r.add("follower", "carriers_waited", &c.carriers_waited);
    r.add("follower", "carriers_wait_expired", &c.carriers_wait_expired);
    r.add("follower", "moves_announced", &c.moves_announced);
    r.add("follower", "moves_applied", &c.moves_applied);
    r.add("follower", "moves_rebound", &c.moves_rebound);
    r.add("follower", "moves_refused", &c.moves_refused);
    r.add("follower", "moves_refused_reset", &c.moves_refused_reset);
    r.add("follower", "moves_abandoned", &c.moves_abandoned);
    r.add("follower", "own_address_changes", &c.own_address_changes);
    r.add("follower", "transfers_applied", &c.transfers_applied);
    r.add("follower", "connects_redirected", &c.connects_redirected);
    const auto& t = follower->changeover_counters();
    r.add("changeover", "changeover_pokes", &t.pokes);
    r.add("changeover", "changeover_unanswered", &t.unanswered);
    r.add("changeover", "changeover_heard", &t.heard);
    r.add("changeover", "changeover_unheard", &t.unheard);
    r.add_histogram("changeover", "seconds", &follower->changeover_seconds(),
                    "Seconds from an ACM to each moved connection heard from on the new path");
    const auto& h = follower->handover().counters();
    r.add("handover", "handovers_started", &h.handovers_started);
    r.add("handover", "handover_syns_sent", &h.syns_sent);
    r.add("handover", "handover_syn_retries", &h.syn_retries);
    r.add("handover", "handover_synacks_accepted", &h.synacks_accepted);
    // The outcomes under plain names: every started handover ends answered (its SYN-ACK
    // accepted) or failed.
    r.add("handover", "handovers_answered", &h.synacks_accepted);
    r.add("handover", "handover_synacks_stray", &h.synacks_stray);
    r.add("handover", "handover_synacks_forged", &h.synacks_forged);
    r.add("handover", "handover_window_acks_sent", &h.window_acks_sent);
    r.add("handover", "handover_window_acks_consumed", &h.window_acks_consumed);
    r.add("handover", "handover_output_held", &h.output_held);
    r.add("handover", "handovers_failed", &h.handovers_failed);
    const auto& o = follower->hold_counters();
    r.add("handover", "hold_flows_held", &o.flows_held);
    r.add("handover", "hold_packets_held", &o.packets_held);
  }
  register_node_counters(r, node);
}

}  // namespace roam
