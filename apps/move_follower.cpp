#include "apps/move_follower.hpp"

#include <cstring>
#include <vector>

#include "apps/cli.hpp"
#include "lwip/priv/tcp_priv.h"
#include "lwip/udp.h"
#include "stack/lwip_address.hpp"
#include "stack/migrate/pcb_migration.hpp"
#include "tun/log.hpp"

namespace roam {

namespace {
constexpr uint64_t poke_interval_ms = 20;
constexpr int poke_attempts = 100;  // two seconds; then the connection's own timers rule

}  // namespace

MoveFollower::MoveFollower(Node& node, uint16_t port) : node_(node), guard_(node) {
  if (uv_timer_init(node_.loop(), poke_timer_.get()) == 0) poke_timer_.mark_initialized();
  poke_timer_.get()->data = this;
  pcb_ = udp_new_ip_type(IPADDR_TYPE_ANY);
  if (pcb_ == nullptr) throw ConfigError("out of memory for the notice socket");
  if (udp_bind(pcb_, IP_ANY_TYPE, port) != ERR_OK) throw ConfigError("cannot bind notice port " + std::to_string(port));
  udp_recv(pcb_, &MoveFollower::on_udp_recv, this);
}

MoveFollower::~MoveFollower() {
  close();
}

void MoveFollower::close() {
  awaiting_.clear();
  if (poke_timer_.valid()) poke_timer_.close();
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

void MoveFollower::poke_new_paths() {
  std::erase_if(awaiting_, [this](AwaitingPath& path) {
    tcp_pcb* pcb = migrate::find_active_pcb(path.flow);
    if (pcb == nullptr || !guard_.is_watched(path.flow)) {  // gone, or heard on the new path
      guard_.unwatch(path.flow);
      return true;
    }
    if (path.pokes_left-- <= 0) {
      guard_.unwatch(path.flow);
      ++counters_.unanswered;
      logger("migrate")->warn("{}: the new server never answered", path.flow.to_string());
      return true;
    }
    ++counters_.pokes;
    migrate::restart_transmission(pcb);
    return false;
  });
  if (awaiting_.empty() && poke_timer_.valid()) uv_timer_stop(poke_timer_.get());
  node_.kick();
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
  for (const auto& flow : old_flows) {
    migrate::FlowKey moved = flow;
    moved.remote = notice.new_address;
    moved.remote_port = notice.new_port;
    if (migrate::find_active_pcb(moved) == nullptr) continue;
    guard_.watch(moved);
    std::erase_if(awaiting_, [&moved](const AwaitingPath& path) { return path.flow == moved; });
    awaiting_.push_back({moved, poke_attempts});
  }
  if (!awaiting_.empty() && poke_timer_.valid() && !uv_is_active(poke_timer_.base())) {
    uv_timer_start(
        poke_timer_.get(),
        [](uv_timer_t* timer) {
          if (auto* self = static_cast<MoveFollower*>(timer->data)) self->poke_new_paths();
        },
        poke_interval_ms, poke_interval_ms);
  }
  if (!old_flows.empty()) {
    logger("migrate")->info("server {} moved to {}: {} connection(s) follow",
                            migrate::endpoint_string(notice.old_address, notice.old_port),
                            migrate::endpoint_string(notice.new_address, notice.new_port), old_flows.size());
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
