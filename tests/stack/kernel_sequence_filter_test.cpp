// Tests for stack/kernel_sequence_filter: which of lwIP's connections the kernel filter
// lists, and with which range (the Node's own window check, widened by the slack ahead).
#include "stack/kernel_sequence_filter.hpp"

#include <doctest/doctest.h>

#include "lwip/priv/tcp_priv.h"
#include "stack/sequence_window.hpp"
#include "support/lwip_lab.hpp"

using namespace roam;

namespace {

bool lists(const std::vector<SequenceFilterFlow>& flows, const tcp_pcb& pcb) {
  for (const auto& flow : flows) {
    if (flow.source_port == pcb.remote_port && flow.destination_port == pcb.local_port &&
        flow.source == lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(&pcb.remote_ip))) &&
        flow.destination == lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(&pcb.local_ip)))) {
      CHECK(flow.first == pcb.rcv_nxt - sequence_zone);
      CHECK(flow.span == 2 * sequence_zone + sequence_filter_slack);
      // Everything the Node's check accepts now lies inside.
      CHECK(pcb.rcv_nxt + sequence_zone - flow.first <= flow.span);
      return true;
    }
  }
  return false;
}

}  // namespace

TEST_CASE("kernel sequence filter: both ends of an established IPv4 connection are listed with the window's range") {
  roam::testing::PeerLab lab(4);
  lab.connect();
  auto flows = sequence_filter_flows_now(KernelSequenceFilter::max_flows);
  tcp_pcb* client = lab.client.connection->pcb();
  tcp_pcb* server = lab.server.connection->pcb();
  CHECK(lists(flows, *client));
  CHECK(lists(flows, *server));
  CHECK(flows.size() == 2);  // the listener is not a connection
  // No more than asked for, busiest (front of the active list) first.
  auto one = sequence_filter_flows_now(1);
  REQUIRE(one.size() == 1);
  CHECK(one[0] == flows[0]);
}

TEST_CASE("kernel sequence filter: IPv6 connections are left to userspace") {
  roam::testing::PeerLab lab(6);
  lab.connect();
  CHECK(sequence_filter_flows_now(KernelSequenceFilter::max_flows).empty());
}
