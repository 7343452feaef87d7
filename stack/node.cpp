#include "stack/node.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "base/log.hpp"
#include "lwip/ip.h"
#include "stack/lwip_address.hpp"
#include "stack/sequence_window.hpp"
#include "stack/wire/handover_segment.hpp"
#include "stack/wire/segment_mac_option.hpp"
#include "stack/wire/tcp_segment_cut.hpp"

namespace roam {

namespace {
// lwIP is a per-process singleton; so is the Node that drives it.
Node* the_node = nullptr;

IpAddress address_of(const std::array<uint8_t, 16>& bytes, uint8_t version) {
  IpAddress address;
  address.version = version;
  address.bytes = bytes;  // IPv4: the view zero-fills the last 12 bytes
  return address;
}

// The one parse of an inbound TCP segment every input stage reads.
std::optional<InboundTcp> parse_inbound_tcp(std::span<const uint8_t> bytes, const wire::PacketInfo& info) {
  auto segment = wire::parse_tcp_segment(bytes, info);
  if (!segment) return std::nullopt;
  InboundTcp tcp;
  tcp.segment = *segment;
  tcp.flow.local = address_of(segment->dst_address, segment->version);
  tcp.flow.remote = address_of(segment->src_address, segment->version);
  tcp.flow.local_port = segment->dst_port;
  tcp.flow.remote_port = segment->src_port;
  if (!segment->options.empty()) {
    std::span<const uint8_t> data;
    tcp.handover_option = wire::find_experimental_option(segment->options, wire::handover_exid, data) !=
                          wire::MacOptionLookup::absent;
  }
  return tcp;
}
}  // namespace

std::string_view to_string(InputStage stage) {
  switch (stage) {
    case InputStage::window:
      return "window";
    case InputStage::authenticate:
      return "authenticate";
    case InputStage::defense:
      return "defense";
    case InputStage::handover:
      return "handover";
    case InputStage::guard:
      return "guard";
    case InputStage::admit:
      return "admit";
  }
  return "unknown";
}

Node::Node(uv_loop_t* loop) : loop_(loop) {
  if (the_node != nullptr) throw std::logic_error("only one Node per process: lwIP is a singleton");
  the_node = this;
  lwip_init();
  roam_lwip_set_tso_limit_fn(&Node::tso_limit);

  uv_timer_init(loop_, timer_.get());
  timer_.mark_initialized();
  timer_.get()->data = this;
  uv_check_init(loop_, check_.get());
  check_.mark_initialized();
  check_.get()->data = this;
  uv_check_start(check_.get(), &Node::on_check);
  uv_idle_init(loop_, idle_.get());
  idle_.mark_initialized();
  idle_.get()->data = this;
  // lwIP always has some timeout pending (IPv6 neighbour discovery): the timer and the
  // check must not keep the loop alive on their own; links, sockets and apps do.
  uv_unref(timer_.base());
  uv_unref(check_.base());
  run_timers_and_rearm();
}

Node::~Node() {
  close();
  the_node = nullptr;
}

Result<Ok, std::string> Node::add_interface(std::unique_ptr<Link> link, const InterfaceConfig& config) {
  if (config.address4.version != 4) return unexpected(std::string("interface address must be IPv4"));
  if (link->mtu() < 576 || link->mtu() > 65535)
    return unexpected("link MTU " + std::to_string(link->mtu()) + " out of range 576-65535");
  auto interface = std::make_unique<Interface>();
  interface->node = this;
  interface->gather_buffer.resize(link->mtu());
  interface->rewrite_buffer.resize(link->mtu() + 64);
  interface->piece_buffer.resize(link->mtu() + 64);
  interface->link = std::move(link);

  ip4_addr_t address;
  ip4_addr_t netmask;
  ip4_addr_t gateway;
  std::memcpy(&address.addr, config.address4.bytes.data(), 4);
  uint32_t mask = config.prefix4 == 0 ? 0 : (0xFFFFFFFFu << (32 - config.prefix4));
  netmask.addr = lwip_htonl(mask);
  ip4_addr_set_zero(&gateway);
  netif* n = &interface->lwip_netif;
  if (netif_add(n, &address, &netmask, &gateway, interface.get(), &Node::netif_init, ip_input) == nullptr)
    return unexpected(std::string("lwIP refused the interface"));
  if (config.address6) {
    ip6_addr_t address6;
    std::memcpy(address6.addr, config.address6->bytes.data(), 16);
    s8_t index = 0;
    if (netif_add_ip6_address(n, &address6, &index) != ERR_OK) {
      netif_remove(n);
      return unexpected(std::string("lwIP refused the IPv6 address"));
    }
    netif_ip6_addr_set_state(n, index, IP6_ADDR_PREFERRED);
  }
  if (interfaces_.empty()) netif_set_default(n);
  netif_set_up(n);
  netif_set_link_up(n);

  Interface* raw = interface.get();
  size_t index = interfaces_.size();
  interfaces_.push_back(std::move(interface));
  auto started =
      raw->link->start([this, index](std::span<const PacketView> batch) { receive_batch(index, batch); });
  if (!started) {
    netif_remove(n);
    interfaces_.pop_back();
    return unexpected(started.error());
  }
  // Offloads are known once the device is open: from now on lwIP may build multi-MSS
  // segments for this netif (tso_limit) and, with checksum offload, skips TCP checksums.
  raw->offloads = raw->link->offloads();
  if (raw->offloads.tcp_checksum) NETIF_SET_CHECKSUM_CTRL(n, NETIF_CHECKSUM_ENABLE_ALL & ~NETIF_CHECKSUM_GEN_TCP);
  if (raw->offloads.max_tcp_payload > 0)
    raw->gather_buffer.resize(std::max(raw->gather_buffer.size(), raw->offloads.max_tcp_payload + 100));
  raw->rewrite_buffer.resize(raw->gather_buffer.size() + 64);
  raw->config = config;
  raw->description = describe(*raw);
  if (kernel_sequence_filter_wanted_ && !kernel_sequence_filter_ && raw->link->set_sequence_filter({})) {
    kernel_sequence_filter_ = std::make_unique<KernelSequenceFilter>(
        loop_,
        [this](std::span<const SequenceFilterFlow> flows) {
          for (auto& each : interfaces_) each->link->set_sequence_filter(flows);
        },
        [this] {
          for (auto& each : interfaces_) each->link->sample_kernel_counters();
        });
  }
  logger("node")->debug("interface up: {}", raw->description);
  return Ok{};
}

std::string Node::describe(const Interface& interface) {
  const auto& config = interface.config;
  return fmt::format("{} {}/{}{}{} mtu {}", interface.link->describe(), config.address4.to_string(), config.prefix4,
                     config.address6 ? " " : "", config.address6 ? config.address6->to_string() : "",
                     interface.link->mtu());
}

Result<Ok, std::string> Node::change_address(const IpAddress& old_address, const IpAddress& new_address) {
  if (old_address.version != new_address.version)
    return unexpected("cannot change " + old_address.to_string() + " into " + new_address.to_string() +
                      ": another address family");
  for (auto& interface : interfaces_) {
    netif* n = &interface->lwip_netif;
    auto& config = interface->config;
    if (old_address.version == 4) {
      if (!(config.address4 == old_address)) continue;
      ip4_addr_t address{};
      std::memcpy(&address.addr, new_address.bytes.data(), 4);
      netif_set_ipaddr(n, &address);  // aborts what is still bound to the old address
      config.address4 = new_address;
    } else {
      if (!config.address6 || !(*config.address6 == old_address)) continue;
      for (s8_t i = 0; i < LWIP_IPV6_NUM_ADDRESSES; ++i) {
        if (!ip6_addr_isvalid(netif_ip6_addr_state(n, i))) continue;
        if (std::memcmp(netif_ip6_addr(n, i)->addr, old_address.bytes.data(), 16) != 0) continue;
        ip6_addr_t address{};
        std::memcpy(address.addr, new_address.bytes.data(), 16);
        netif_ip6_addr_set(n, i, &address);
        netif_ip6_addr_set_state(n, i, IP6_ADDR_PREFERRED);
      }
      config.address6 = new_address;
    }
    interface->description = describe(*interface);
    logger("node")->info("address {} is now {} (interface {})", old_address.to_string(), new_address.to_string(),
                         interface->description);
    kick();
    return Ok{};
  }
  return unexpected("no interface has the address " + old_address.to_string());
}

std::optional<IpAddress> Node::interface_address(size_t index, uint8_t version) const {
  if (index >= interfaces_.size()) return std::nullopt;
  const auto& config = interfaces_[index]->config;
  if (version == 4) return config.address4;
  return config.address6;
}

void Node::reserve_output_space(size_t bytes) {
  output_reserve_ = bytes;
  for (auto& interface : interfaces_) {
    interface->lwip_netif.mtu = static_cast<u16_t>(interface->link->mtu() - bytes);
#if LWIP_IPV6 && LWIP_ND6_ALLOW_RA_UPDATES
    interface->lwip_netif.mtu6 = interface->lwip_netif.mtu;
#endif
    interface->rewrite_buffer.resize(interface->link->mtu() + 64);
    interface->piece_buffer.resize(interface->link->mtu() + 64);
  }
}

err_t Node::netif_init(netif* n) {
  auto* interface = static_cast<Interface*>(n->state);
  n->name[0] = 'r';
  n->name[1] = 's';
  n->mtu = static_cast<u16_t>(interface->link->mtu() - interface->node->output_reserve_);
#if LWIP_IPV6 && LWIP_ND6_ALLOW_RA_UPDATES
  n->mtu6 = n->mtu;
#endif
  n->output = &Node::output4;
  n->output_ip6 = &Node::output6;
  n->flags = 0;  // point-to-point: no broadcast, no ARP
  return ERR_OK;
}

u16_t Node::tso_limit(netif* n) {
  if (the_node == nullptr || n == nullptr || n->output != &Node::output4) return 0;  // not one of ours
  const auto* interface = static_cast<const Interface*>(n->state);
  return static_cast<u16_t>(std::min<size_t>(interface->offloads.max_tcp_payload, 0xffff));
}

err_t Node::output4(netif* n, pbuf* p, const ip4_addr_t* /*next_hop*/) {
  auto* interface = static_cast<Interface*>(n->state);
  return interface->node->output(*interface, p);
}

err_t Node::output6(netif* n, pbuf* p, const ip6_addr_t* /*next_hop*/) {
  auto* interface = static_cast<Interface*>(n->state);
  return interface->node->output(*interface, p);
}

err_t Node::output(Interface& interface, pbuf* p) {
  std::span<const uint8_t> packet;
  if (p->next == nullptr) {
    packet = {static_cast<const uint8_t*>(p->payload), p->len};
  } else {
    if (p->tot_len > interface.gather_buffer.size()) return ERR_OK;  // larger than the MTU: dropped
    u16_t copied = pbuf_copy_partial(p, interface.gather_buffer.data(), p->tot_len, 0);
    packet = {interface.gather_buffer.data(), copied};
  }
  for (OutputFilter* filter : output_filters_) {
    if (filter->on_output(packet) == FilterVerdict::drop) {
      ++counters_.tx_filtered;
      return ERR_OK;  // as if lost on the wire: TCP recovers it
    }
  }
  // Only tcp_output_segment builds packets above the MTU (on a TSO netif), and it
  // publishes its pcb's MSS while this output runs.
  const bool oversized = packet.size() > interface.lwip_netif.mtu && interface.offloads.max_tcp_payload > 0 &&
                         roam_lwip_tcp_tx_mss > 0;
  if (oversized && rewriter_ != nullptr && rewriter_->per_piece(packet)) {
    cut_and_send(interface, packet, roam_lwip_tcp_tx_mss);
    return ERR_OK;
  }
  if (rewriter_ != nullptr) packet = rewriter_->rewrite(packet, interface.rewrite_buffer);
  ++counters_.tx_packets;
  if (oversized) {
    ++counters_.tx_segmented;
    interface.link->send_segmented(packet, roam_lwip_tcp_tx_mss);
  } else {
    interface.link->send(packet);  // a link drops (and counts) what exceeds its MTU
  }
  return ERR_OK;
}

// The pcb's MSS fits the netif's MTU, which is the link's less the rewriter's reserve: each
// piece, rewritten, fits the link. Costs a copy and a device write per piece, where the
// TSO path writes once per super-segment (tools/bench/run acm: segment_mac_ratio_offload).
void Node::cut_and_send(Interface& interface, std::span<const uint8_t> packet, uint16_t mss) {
  auto info = wire::describe_own_tcp_packet(packet);
  auto tcp = info ? wire::parse_tcp_segment(packet, *info) : unexpected(wire::PacketError::bad_transport_header);
  if (!tcp) {  // lwIP built it: a bug, not traffic. Lost as on the wire; TCP recovers.
    ++counters_.tx_filtered;
    return;
  }
  const auto checksum =
      interface.offloads.tcp_checksum ? wire::PieceChecksum::offloaded : wire::PieceChecksum::full;
  const size_t pieces = wire::tcp_piece_count(tcp->payload.size(), mss);
  ++counters_.tx_cut;
  for (size_t i = 0; i < pieces; ++i) {
    size_t length = wire::cut_tcp_piece(packet, *info, *tcp, mss, i, checksum, interface.piece_buffer);
    if (length == 0) break;
    auto piece = rewriter_->rewrite(std::span<const uint8_t>(interface.piece_buffer).first(length),
                                    interface.rewrite_buffer);
    ++counters_.tx_packets;
    ++counters_.tx_cut_pieces;
    interface.link->send(piece);
  }
}

void Node::receive_packet(size_t interface_index, std::span<const uint8_t> packet) {
  if (closed_ || interface_index >= interfaces_.size()) return;
  Interface& interface = *interfaces_[interface_index];
  ++counters_.rx_packets;
  auto checked = wire::check_ip_packet(packet);
  if (!checked) {
    ++counters_.rx_malformed;
    ++counters_.malformed_by_kind[static_cast<size_t>(checked.error())];
    logger("node")->debug("dropped malformed packet ({} bytes): {}", packet.size(), wire::to_string(checked.error()));
    return;
  }
  const wire::PacketInfo& info = checked.value();
  auto bytes = packet.first(info.length);  // link padding beyond the IP length is not ours
  InboundPacket inbound{bytes, info, &interface.lwip_netif, std::nullopt, uv_now(loop_), link_busy_};
  if (info.protocol == wire::ip_protocol_tcp) {
    inbound.tcp = parse_inbound_tcp(bytes, info);
    if (!inbound.tcp) {  // check_ip_packet vouched for the header: a bug, not an attack
      ++counters_.rx_malformed;
      ++counters_.malformed_by_kind[static_cast<size_t>(wire::PacketError::bad_transport_header)];
      return;
    }
  }
  if (inbound.tcp && check_sequence(*inbound.tcp) == SequenceVerdict::far) {
    ++counters_.rx_filtered;
    ++counters_.rx_filtered_by_stage[static_cast<size_t>(InputStage::window)];
    return;
  }
  if (run_input_stages(inbound) == FilterVerdict::drop) return;
  pbuf* p = pbuf_alloc(PBUF_RAW, info.length, PBUF_RAM);
  if (p == nullptr) {
    ++counters_.rx_no_memory;
    return;
  }
  std::memcpy(p->payload, bytes.data(), bytes.size());
  if (interface.lwip_netif.input(p, &interface.lwip_netif) != ERR_OK) pbuf_free(p);
}

void Node::receive_batch(size_t interface_index, std::span<const PacketView> batch) {
  link_busy_ = batch.size() >= busy_batch_packets;
  if (batch.size() > 1)
    for (const auto& filters : input_filters_)
      for (InputFilter* filter : filters) filter->prefetch(batch, link_busy_, uv_now(loop_));
  for (const auto& packet : batch) receive_packet(interface_index, packet);
  link_busy_ = false;
}

void Node::add_input_filter(InputStage stage, InputFilter* filter) {
  remove_input_filter(filter);
  input_filters_[static_cast<size_t>(stage)].push_back(filter);
}

void Node::remove_input_filter(InputFilter* filter) {
  for (auto& stage : input_filters_) std::erase(stage, filter);
}

FilterVerdict Node::run_input_stages(const InboundPacket& packet) {
  for (size_t stage = 0; stage < input_stage_count; ++stage) {
    const auto& filters = input_filters_[stage];
    // By index: a filter may add or remove filters (not itself) while it runs.
    for (size_t i = 0; i < filters.size(); ++i) {
      if (filters[i]->on_input(packet) == FilterVerdict::drop) {
        ++counters_.rx_filtered;
        ++counters_.rx_filtered_by_stage[stage];
        return FilterVerdict::drop;
      }
    }
    if (stage == static_cast<size_t>(InputStage::handover) && packet.tcp && packet.tcp->handover_option) {
      // The authenticate stage let it by for its own tag, which only a handover filter
      // checks: whatever none of them consumed must not reach the guard or lwIP.
      ++counters_.rx_filtered;
      ++counters_.rx_filtered_by_stage[stage];
      ++counters_.rx_handover_unclaimed;
      return FilterVerdict::drop;
    }
  }
  return FilterVerdict::pass;
}

bool Node::send_packet(std::span<const uint8_t> packet) {
  if (closed_) return false;
  auto source = IpAddress::source_of(packet);
  auto destination = IpAddress::destination_of(packet);
  if (!source || !destination) return false;
  ip_addr_t src = to_lwip(*source);
  ip_addr_t dst = to_lwip(*destination);
  netif* route = ip_route(&src, &dst);
  if (route == nullptr || route->state == nullptr) return false;
  auto* interface = static_cast<Interface*>(route->state);
  ++counters_.tx_packets;
  interface->link->send(packet);
  return true;
}

void Node::defer(std::function<void()> task) {
  deferred_.push_back(std::move(task));
  if (!closed_ && !uv_is_active(idle_.base())) uv_idle_start(idle_.get(), &Node::on_idle);
}

void Node::kick() {
  run_timers_and_rearm();
}

void Node::run_deferred() {
  // Tasks may defer more tasks; run until none are left.
  while (!deferred_.empty()) {
    auto tasks = std::move(deferred_);
    deferred_.clear();
    for (auto& task : tasks) task();
  }
}

void Node::run_timers_and_rearm() {
  if (closed_) return;
  sys_check_timeouts();
  u32_t sleep_ms = sys_timeouts_sleeptime();
  if (sleep_ms == SYS_TIMEOUTS_SLEEPTIME_INFINITE) {
    uv_timer_stop(timer_.get());
  } else {
    uv_timer_start(timer_.get(), &Node::on_timer, sleep_ms, 0);
  }
}

void Node::flush_links() {
  for (auto& interface : interfaces_) interface->link->flush();
}

void Node::on_timer(uv_timer_t* timer) noexcept {
  auto* node = static_cast<Node*>(timer->data);
  if (node == nullptr) return;
  node->run_timers_and_rearm();
  node->flush_links();  // the loop may block in poll next: do not hold retransmissions
}

void Node::on_idle(uv_idle_t* idle) noexcept {
  auto* node = static_cast<Node*>(idle->data);
  if (node == nullptr) return;
  uv_idle_stop(idle);
  node->run_deferred();
  node->run_timers_and_rearm();
  node->flush_links();
}

void Node::on_check(uv_check_t* check) noexcept {
  auto* node = static_cast<Node*>(check->data);
  if (node == nullptr) return;
  node->run_deferred();
  node->run_timers_and_rearm();
  node->flush_links();
}

void Node::close() {
  if (closed_) return;
  run_deferred();
  flush_links();
  closed_ = true;
  if (kernel_sequence_filter_) kernel_sequence_filter_->close();
  for (auto& interface : interfaces_) {
    interface->link->close();
    netif_remove(&interface->lwip_netif);
  }
  roam_lwip_set_tso_limit_fn(nullptr);
  timer_.close();
  check_.close();
  idle_.close();
}

}  // namespace roam
