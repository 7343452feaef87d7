#include "apps/move_follower.hpp"

#include <cstring>
#include <vector>

#include "apps/cli.hpp"
#include "lwip/udp.h"
#include "stack/migrate/pcb_migration.hpp"
#include "tun/log.hpp"

namespace roam {

MoveFollower::MoveFollower(Node& node, uint16_t port) : node_(node), guard_(node) {
  pcb_ = udp_new_ip_type(IPADDR_TYPE_ANY);
  if (pcb_ == nullptr) throw ConfigError("out of memory for the notice socket");
  if (udp_bind(pcb_, IP_ANY_TYPE, port) != ERR_OK) throw ConfigError("cannot bind notice port " + std::to_string(port));
  udp_recv(pcb_, &MoveFollower::on_udp_recv, this);
}

MoveFollower::~MoveFollower() { close(); }

void MoveFollower::close() {
  if (pcb_ == nullptr) return;
  udp_remove(pcb_);
  pcb_ = nullptr;
}

void MoveFollower::on_udp_recv(void* arg, udp_pcb*, pbuf* p, const ip_addr_t* addr, u16_t port) noexcept {
  auto* self = static_cast<MoveFollower*>(arg);
  PbufPtr packet(p);
  if (self == nullptr || !packet || addr == nullptr) return;
  std::vector<uint8_t> bytes(packet->tot_len);
  pbuf_copy_partial(packet.get(), bytes.data(), packet->tot_len, 0);
  auto notice = migrate::decode_move_notice(bytes);
  if (!notice || notice->kind != migrate::MoveNoticeKind::notice) {
    ++self->counters_.bad_notices;
    return;
  }
  self->on_notice(*notice, *addr, port);
}

void MoveFollower::on_notice(const migrate::MoveNotice& notice, const ip_addr_t& from, u16_t from_port) {
  ++counters_.notices;
  auto old_flows = migrate::rewrite_remote(notice.old_address, notice.old_port, notice.new_address, notice.new_port);
  for (const auto& flow : old_flows) {
    guard_.silence(flow);
    migrate::FlowKey moved = flow;
    moved.remote = notice.new_address;
    moved.remote_port = notice.new_port;
    guard_.unsilence(moved);  // a flow may come back to a server it once left
  }
  counters_.connections_moved += old_flows.size();
  if (!old_flows.empty()) {
    logger("migrate")->info("server {}:{} moved to {}:{}: {} connection(s) follow", notice.old_address.to_string(),
                            notice.old_port, notice.new_address.to_string(), notice.new_port, old_flows.size());
  }
  // Acknowledge every copy (the first ack may have been lost).
  migrate::MoveNotice ack = notice;
  ack.kind = migrate::MoveNoticeKind::ack;
  auto bytes = migrate::encode_move_notice(ack);
  pbuf* p = pbuf_alloc(PBUF_TRANSPORT, static_cast<u16_t>(bytes.size()), PBUF_RAM);
  if (p == nullptr) return;
  std::memcpy(p->payload, bytes.data(), bytes.size());
  udp_sendto(pcb_, p, &from, from_port);
  pbuf_free(p);
  node_.kick();
}

}  // namespace roam
