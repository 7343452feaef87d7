// Node: one libuv loop that owns this process's lwIP stack (lwIP keeps global state, so
// there is exactly one Node per process). It attaches links as lwIP netifs, validates,
// parses and filters every inbound packet, drives lwIP's timers from a libuv timer set to
// lwIP's next deadline, and flushes links once per loop iteration. Loop thread only.
//
// Packet walk in (one call site, Node::receive_packet, for IPv4 and IPv6 alike):
//   Link batch -> validate: wire::check_ip_packet (malformed: counted by kind, dropped;
//                 IPv4 fragments are malformed here: lwIP's reassembly is off and TCP
//                 honours the MSS, so there is never a packet to reassemble first)
//              -> parse once: wire::parse_tcp_segment + FlowKey -> InboundPacket::tcp
//              -> window        (the Node's own check, no filters: a segment of a connection
//                                lwIP holds whose sequence number is far outside its window
//                                is a blind forgery: dropped before any copy or crypto;
//                                stack/sequence_window.hpp)
//              -> authenticate  (SegmentMacGuard: the segment MAC of protected flows)
//              -> defense       (SynDefense: a SYN to a listener in cookie mode is answered
//                                statelessly here; admission caps per source prefix)
//              -> handover      (HandoverResponder on a server, HandoverInitiator on a
//                                client: the synthetic segments, authenticated by their
//                                own tag; any handover segment left over is dropped here)
//              -> guard         (MigrationGuard: silenced flows, parked imports unparked)
//              -> admit         (SynDefense: an ACK to a listener that matches no pcb is a
//                                SYN cookie's answer: verified, it creates the pcb; forged,
//                                dropped. Last, so parked imports were unparked first)
//              -> pbuf -> netif->input -> ip4_input / ip6_input -> tcp_input -> pcb callbacks.
//   Stages run in this order whatever order their filters were constructed in; a drop
//   anywhere ends the walk (counted per stage). So nothing unparks, rebinds or reaches
//   lwIP before the packet's segment MAC was checked (STYLE: authenticate, then change
//   state).
// Packet walk out: tcp_write (segments of one MSS, or of many on a link with TSO:
//                  roam_lwip_tcp_segment_size) -> tcp_output -> netif output -> output
//                  filter chain -> rewriter -> Link::send, or Link::send_segmented(packet,
//                  MSS) for a segment larger than the MTU (the link's device cuts it) ->
//                  Link::flush. A segment larger than the MTU that the rewriter must
//                  change piece by piece (OutputRewriter::per_piece: a flow the segment MAC
//                  protects) is cut here instead, and each piece rewritten and sent alone.
#pragma once

#include <uv.h>

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ip_address.hpp"
#include "base/uv_handle.hpp"
#include "stack/flow_key.hpp"
#include "stack/kernel_sequence_filter.hpp"
#include "stack/lwip.hpp"
#include "stack/wire/ip_packet.hpp"
#include "stack/wire/tcp_header.hpp"
#include "tun/link.hpp"

namespace roam {

// What an input filter decides about one packet.
enum class FilterVerdict { pass, drop };

// The named stages of the input path, run in this order (see the walk above). Filters
// within one stage run in the order they were added.
enum class InputStage : uint8_t {
  window,        // the Node's sequence check (stack/sequence_window.hpp); filters may join it
  authenticate,  // per-segment MAC: a protected flow's segment without a valid tag stops here
  defense,       // SYN cookies (the SYN side), admission caps
  handover,      // the NAT handover's synthetic segments (their own tag)
  guard,         // moving flows: silencing on the old host, parking on the new one
  admit,         // SYN cookies (the ACK side): after the guard, which unparks imports
};
inline constexpr size_t input_stage_count = 6;
std::string_view to_string(InputStage stage);

// The TCP segment of an inbound packet, parsed once by the Node for every filter.
struct InboundTcp {
  wire::TcpSegmentView segment;  // ports, seq, ack, flags, window, header length, options, payload
  FlowKey flow;                  // as seen from this host: local = the packet's destination
  // The segment carries an RFC 6994 option with the handover ExID (0x5248), well-formed
  // or not: the handover stage authenticates (or drops) it, the segment MAC does not.
  bool handover_option = false;
};

struct InboundPacket {
  std::span<const uint8_t> bytes;  // the whole IP packet, validated by check_ip_packet
  wire::PacketInfo info;
  netif* interface;
  std::optional<InboundTcp> tcp;  // set when info.protocol is TCP
  // The loop's time (uv_now, ms) when the packet came in: filters that are state machines
  // are fed the time with the packet and read no clock themselves.
  uint64_t now_ms = 0;
  // The link handed this packet over in a batch of at least busy_batch_packets: more are
  // probably queued behind it, and the kernel drops what its queue cannot hold. Filters
  // that answer floods may shed their dearest work then (SynDefense's SYN-ACK budget).
  bool link_busy = false;
};
// Links read up to 64 packets per wake-up; a batch half that size means the reader is
// behind (one at a time when it keeps up).
inline constexpr size_t busy_batch_packets = 32;

// A filter in one input stage (firewall, flood counter, SYN guard, handover responder...).
class InputFilter {
 public:
  virtual ~InputFilter() = default;
  virtual FilterVerdict on_input(const InboundPacket& packet) = 0;
  // Before a batch of two or more packets goes through on_input packet by packet: a
  // filter whose look-ups miss the cache per packet (a table of megabytes) may start those
  // memory reads for the whole batch here, so they overlap. `busy`, `now_ms`: as
  // InboundPacket::link_busy and now_ms for each of them. A hint: the packets are raw and
  // unchecked, and nothing may be decided or changed on them.
  virtual void prefetch(std::span<const std::span<const uint8_t>> batch, bool busy, uint64_t now_ms) {
    (void)batch;
    (void)busy;
    (void)now_ms;
  }
};

// A stage of the output chain, after lwIP built the packet and before the link sends it
// (a connection being moved must stay silent until its new path is open).
class OutputFilter {
 public:
  virtual ~OutputFilter() = default;
  virtual FilterVerdict on_output(std::span<const uint8_t> packet) = 0;
};

// The last stage of the output chain: may hand back a changed copy of the packet (the
// per-segment MAC option). At most one; it must not grow a packet by more than the space
// reserved with Node::reserve_output_space.
class OutputRewriter {
 public:
  virtual ~OutputRewriter() = default;
  // Returns `packet` itself, or the changed packet written into `scratch`.
  virtual std::span<const uint8_t> rewrite(std::span<const uint8_t> packet, std::span<uint8_t> scratch) = 0;
  // Whether this packet's change depends on its payload and so must be made on every
  // MSS-sized piece (the segment MAC): the Node then cuts a multi-MSS segment into pieces
  // itself (wire/tcp_segment_cut) and rewrites each, instead of leaving the cut to a TSO
  // device that would copy one super-segment's options onto every piece.
  virtual bool per_piece(std::span<const uint8_t> packet) = 0;
};

struct InterfaceConfig {
  IpAddress address4;  // this node's IPv4 address on the link
  uint8_t prefix4 = 32;
  std::optional<IpAddress> address6;  // optional IPv6 address
};

struct NodeCounters {
  uint64_t rx_packets = 0;
  uint64_t rx_malformed = 0;
  std::array<uint64_t, wire::packet_error_count> malformed_by_kind{};
  uint64_t rx_filtered = 0;  // dropped by any input stage (the sum of the next array)
  std::array<uint64_t, input_stage_count> rx_filtered_by_stage{};  // indexed by InputStage
  uint64_t rx_handover_unclaimed = 0;  // handover segments no handover filter took (in rx_filtered)
  uint64_t rx_no_memory = 0;
  uint64_t tx_packets = 0;
  uint64_t tx_filtered = 0;
  uint64_t tx_segmented = 0;  // packets larger than the MTU handed to a TSO link
  uint64_t tx_cut = 0;        // packets larger than the MTU cut here for the rewriter
  uint64_t tx_cut_pieces = 0; // the pieces they made (each in tx_packets)
};

class Node {
 public:
  explicit Node(uv_loop_t* loop);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  uv_loop_t* loop() const { return loop_; }

  // Whether links that offer one get a kernel sequence filter (stack/kernel_sequence_filter.hpp;
  // on by default). Takes effect for interfaces added after the call.
  void set_kernel_sequence_filter(bool on) { kernel_sequence_filter_wanted_ = on; }
  // The keeper of the links' kernel filters; nullptr when no link took one.
  const KernelSequenceFilter* kernel_sequence_filter() const { return kernel_sequence_filter_.get(); }

  // Adds a link as an lwIP netif with the given addresses; the first one is the default
  // route. Starts reading from the link.
  Result<Ok, std::string> add_interface(std::unique_ptr<Link> link, const InterfaceConfig& config);

  // This node's own address changed (seed 003: a client roamed to another network, an
  // operator readdressed it): `old_address` becomes `new_address` (same family) on the
  // interface that has it. lwIP aborts every connection still bound to the old address,
  // so whoever moves connections rebinds them first (Follower::change_own_address);
  // listeners follow by themselves. Fails, changing nothing, when no interface has
  // `old_address` or the families differ.
  Result<Ok, std::string> change_address(const IpAddress& old_address, const IpAddress& new_address);
  // The interface's IPv4 address, or its first IPv6 address; nullopt when it has none.
  std::optional<IpAddress> interface_address(size_t index, uint8_t version) const;

  // Appends a filter to one input stage (after the stage's earlier filters). The Node does
  // not own it; remove it before destroying it. A filter belongs to one stage at a time.
  void add_input_filter(InputStage stage, InputFilter* filter);
  // Removes a filter from whichever stage holds it (nothing if none does).
  void remove_input_filter(InputFilter* filter);
  // Appends a filter to the output chain. The Node does not own it.
  void add_output_filter(OutputFilter* filter) { output_filters_.push_back(filter); }
  void remove_output_filter(OutputFilter* filter) { std::erase(output_filters_, filter); }

  void set_output_rewriter(OutputRewriter* rewriter) { rewriter_ = rewriter; }
  // Makes lwIP see every link's MTU `bytes` smaller (and so build TCP segments that
  // small), leaving room for what an OutputRewriter adds. Call before any connection.
  void reserve_output_space(size_t bytes);

  // Feeds one packet as if a link had received it (used by tests and by the links).
  void receive_packet(size_t interface_index, std::span<const uint8_t> packet);
  // Feeds what a link read in one wake-up (InboundPacket::link_busy for a large batch).
  void receive_batch(size_t interface_index, std::span<const PacketView> batch);

  // Sends a packet this process built itself (the NAT handover's synthetic segments) on
  // the interface lwIP routes its destination over, past the output filters and the
  // rewriter (they are for lwIP's own packets). False when no interface routes it.
  bool send_packet(std::span<const uint8_t> packet);

  // Runs `task` on the loop after the current callback returns: the safe place to destroy
  // objects whose lwIP or libuv callbacks may still be on the stack.
  void defer(std::function<void()> task);

  // Re-arms the lwIP timer after callers changed lwIP state outside a Node callback.
  void kick();

  // Closes links and handles. lwIP pcbs must have been closed by their owners first.
  void close();

  const NodeCounters& counters() const { return counters_; }
  const Link& link(size_t index) const { return *interfaces_.at(index)->link; }
  Link& link(size_t index) { return *interfaces_.at(index)->link; }
  // Whether kernel filters are wanted (set_kernel_sequence_filter): SynDefense asks before
  // it sets up a TUN link's first-SYN check.
  bool kernel_filters_wanted() const { return kernel_sequence_filter_wanted_; }
  size_t interface_count() const { return interfaces_.size(); }
  // One link counter summed over every link (e.g. &LinkCounters::rx_foreign).
  uint64_t link_counter_total(uint64_t LinkCounters::*counter) const {
    uint64_t total = 0;
    for (const auto& each : interfaces_) total += each->link->counters().*counter;
    return total;
  }
  const LinkOffloads& offloads(size_t index) const { return interfaces_.at(index)->offloads; }
  // The interface's lwIP netif (to bind pcbs to it, or to tell its packets in a filter).
  netif* lwip_interface(size_t index) { return &interfaces_.at(index)->lwip_netif; }
  // "udp:127.0.0.1:7001 198.18.12.2/32 mtu 1500": for the app's start-up line.
  const std::string& describe_interface(size_t index) const { return interfaces_.at(index)->description; }

 private:
  struct Interface {
    Node* node = nullptr;
    std::unique_ptr<Link> link;
    netif lwip_netif{};
    std::vector<uint8_t> gather_buffer;   // for pbuf chains that are not contiguous
    std::vector<uint8_t> rewrite_buffer;  // for the OutputRewriter's copy
    std::vector<uint8_t> piece_buffer;    // one MSS-sized piece of a cut segment
    LinkOffloads offloads;                // as the link reported them once started
    InterfaceConfig config;               // the addresses as they are now
    std::string description;
  };
  static std::string describe(const Interface& interface);

  static u16_t tso_limit(netif* n);
  static err_t netif_init(netif* n);
  static err_t output4(netif* n, pbuf* p, const ip4_addr_t* next_hop);
  static err_t output6(netif* n, pbuf* p, const ip6_addr_t* next_hop);
  static void on_timer(uv_timer_t* timer) noexcept;
  static void on_check(uv_check_t* check) noexcept;
  static void on_idle(uv_idle_t* idle) noexcept;

  err_t output(Interface& interface, pbuf* p);
  void cut_and_send(Interface& interface, std::span<const uint8_t> packet, uint16_t mss);
  FilterVerdict run_input_stages(const InboundPacket& packet);
  void run_timers_and_rearm();
  void run_deferred();
  void flush_links();

  uv_loop_t* loop_;
  std::vector<std::unique_ptr<Interface>> interfaces_;
  std::array<std::vector<InputFilter*>, input_stage_count> input_filters_;
  std::vector<OutputFilter*> output_filters_;
  OutputRewriter* rewriter_ = nullptr;
  size_t output_reserve_ = 0;
  std::vector<std::function<void()>> deferred_;
  UvHandle<uv_timer_t> timer_;
  UvHandle<uv_check_t> check_;
  UvHandle<uv_idle_t> idle_;
  NodeCounters counters_;
  bool kernel_sequence_filter_wanted_ = true;
  std::unique_ptr<KernelSequenceFilter> kernel_sequence_filter_;
  bool link_busy_ = false;  // receive_batch is feeding a large batch
  bool closed_ = false;
};

}  // namespace roam
