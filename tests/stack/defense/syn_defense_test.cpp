// SynDefense on a Node with the real lwIP: in cookie mode a SYN to a listener is answered
// statelessly with a SYN-ACK whose ISN is a cookie, the client's ACK makes the connection
// (its payload delivered), a forged ACK makes nothing and gets no answer; auto mode turns
// cookies on when the backlog fills; admission caps per source prefix.
#include "stack/defense/syn_defense.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "lwip/priv/tcp_priv.h"
#include "base/uv_handle.hpp"
#include "stack/connection_id.hpp"
#include "stack/control/owner_proof.hpp"
#include "stack/pcb_owner.hpp"
#include "stack/defense/admission.hpp"
#include "stack/tcp_listener.hpp"
#include "stack/wire/syn_options.hpp"
#include "stack/wire/tcp_header.hpp"
#include "support/fake_link.hpp"
#include "support/lwip_lab.hpp"
#include "support/server_move.hpp"

namespace {

using namespace roam;
using roam::defense::CookieMode;
using roam::defense::SynDefense;
using roam::defense::SynDefenseConfig;
using roam::testing::FakeLink;
using wire::TcpSegmentView;

constexpr std::array<uint8_t, 4> node_address{198, 18, 12, 2};

struct Fixture {
  uv_loop_t loop{};
  std::unique_ptr<Node> node;
  FakeLink* link = nullptr;
  std::unique_ptr<TcpListener> listener;
  std::unique_ptr<SynDefense> defense;
  std::vector<std::unique_ptr<testing::LabPeer>> accepted;

  explicit Fixture(SynDefenseConfig config) {
    uv_loop_init(&loop);
    node = std::make_unique<Node>(&loop);
    auto fake = std::make_unique<FakeLink>();
    link = fake.get();
    InterfaceConfig interface;
    interface.address4 = *IpAddress::parse("198.18.12.2");
    interface.prefix4 = 15;
    REQUIRE(node->add_interface(std::move(fake), interface));
    auto l = TcpListener::listen(7000, [this](tcp_pcb* pcb) {
      auto peer = std::make_unique<testing::LabPeer>();
      peer->connection = std::make_unique<TcpConnection>(pcb, peer.get());
      accepted.push_back(std::move(peer));
      return true;
    });
    REQUIRE(l);
    listener = std::move(l.value());
    defense = std::make_unique<SynDefense>(*node, config);
  }
  ~Fixture() {
    accepted.clear();
    // lwIP's own half-open pcbs of this test: gone with it, so the next test counts afresh.
    for (;;) {
      tcp_pcb* pcb = tcp_active_pcbs;
      while (pcb != nullptr && pcb->local_port != 7000) pcb = pcb->next;
      if (pcb == nullptr) break;
      tcp_abort(pcb);
    }
    defense.reset();
    listener.reset();
    node->close();
    uv_run(&loop, UV_RUN_NOWAIT);
    node.reset();
    uv_run(&loop, UV_RUN_NOWAIT);
    uv_loop_close(&loop);
  }

  std::vector<uint8_t> segment(std::array<uint8_t, 4> from, uint16_t src_port, uint8_t flags, uint32_t seq,
                               uint32_t ack, std::span<const uint8_t> options = {},
                               std::span<const uint8_t> payload = {}) {
    wire::Ipv4TcpFields fields;
    fields.src = from;
    fields.dst = node_address;
    fields.src_port = src_port;
    fields.dst_port = 7000;
    fields.flags = flags;
    fields.seq = seq;
    fields.ack = ack;
    fields.window = 1000;
    fields.options = options;
    std::vector<uint8_t> out(wire::ipv4_tcp_packet_size(options.size(), payload.size()));
    REQUIRE(wire::build_ipv4_tcp(out, fields, payload) == out.size());
    return out;
  }
  // lwIP's pcbs of this listener for a client port (other tests may leave pcbs behind).
  static size_t pcbs_for(uint16_t remote_port) {
    size_t n = 0;
    for (tcp_pcb* pcb = tcp_active_pcbs; pcb != nullptr; pcb = pcb->next)
      n += pcb->local_port == 7000 && pcb->remote_port == remote_port ? 1 : 0;
    return n;
  }
  // Injects and returns what the node sent in answer.
  std::vector<std::vector<uint8_t>> exchange(const std::vector<uint8_t>& packet) {
    link->sent.clear();
    link->inject(packet);
    uv_run(&loop, UV_RUN_NOWAIT);
    return std::move(link->sent);
  }
};

TcpSegmentView parse(const std::vector<uint8_t>& packet) {
  auto info = wire::check_ip_packet(packet);  // checksums too: the crafted SYN-ACK is valid
  REQUIRE(info);
  auto tcp = wire::parse_tcp_segment(packet, *info);
  REQUIRE(tcp);
  return *tcp;
}

constexpr std::array<uint8_t, 4> client{198, 18, 11, 2};
// MSS 1460, NOP, window scale 7 (a Linux SYN without timestamps and SACK).
constexpr std::array<uint8_t, 8> syn_options{2, 4, 0x05, 0xb4, 1, 3, 3, 7};

SynDefenseConfig mode(CookieMode m) {
  SynDefenseConfig config;
  config.mode = m;
  return config;
}

}  // namespace

TEST_CASE("cookie mode: a SYN gets a cookie SYN-ACK, its ACK makes the connection and delivers its payload") {
  Fixture f(mode(CookieMode::on));
  auto replies = f.exchange(f.segment(client, 40000, TcpSegmentView::SYN, 1000, 0, syn_options));
  REQUIRE(replies.size() == 1);
  auto synack = parse(replies[0]);
  CHECK(synack.flags == (TcpSegmentView::SYN | TcpSegmentView::ACK));
  CHECK(synack.ack == 1001);
  CHECK(synack.src_port == 7000);
  CHECK(synack.dst_port == 40000);
  auto options = wire::parse_syn_options(synack.options);
  CHECK(options.mss == 1460);  // our link's MTU 1500 - 40
  CHECK(options.window_scale == TCP_RCV_SCALE);
  CHECK(f.defense->counters().syn_cookies_sent == 1);
  CHECK(f.accepted.empty());  // stateless: nothing yet
  CHECK(f.pcbs_for(40000) == 0);
  CHECK(defense::half_open_total() == 0);

  const std::string hello = "hello over a cookie";
  replies = f.exchange(f.segment(client, 40000, TcpSegmentView::ACK | TcpSegmentView::PSH, 1001, synack.seq + 1, {},
                                 {reinterpret_cast<const uint8_t*>(hello.data()), hello.size()}));
  CHECK(f.defense->counters().syn_cookies_ok == 1);
  REQUIRE(f.accepted.size() == 1);
  auto& server = *f.accepted[0];
  CHECK(std::string(server.received.begin(), server.received.end()) == hello);
  tcp_pcb* pcb = server.connection->pcb();
  REQUIRE(pcb != nullptr);
  CHECK(pcb->state == ESTABLISHED);
  CHECK(pcb->snd_scale == 7);
  CHECK(pcb->mss == 1460);
  CHECK(pcb->snd_wnd == 1000u << 7);
  // The server answers: an ACK of the payload (now or when it sends), from our cookie + 1.
  server.send(std::string_view("and back"));
  uv_run(&f.loop, UV_RUN_NOWAIT);
  bool answered = false;
  for (auto& packet : f.link->sent) {
    auto reply = parse(packet);
    CHECK(!reply.has(TcpSegmentView::RST));
    if (reply.seq == synack.seq + 1 && reply.ack == 1001 + hello.size()) answered = true;
  }
  CHECK(answered);
  CHECK(f.defense->counters().syn_cookies_bad == 0);
}

TEST_CASE("cookie mode: forged ACKs make nothing, are counted and get no answer") {
  Fixture f(mode(CookieMode::on));
  auto replies = f.exchange(f.segment(client, 40010, TcpSegmentView::SYN, 5000, 0, syn_options));
  REQUIRE(replies.size() == 1);
  auto synack = parse(replies[0]);
  // A blind guess, the right cookie for another port, the right cookie with another ISN.
  CHECK(f.exchange(f.segment(client, 40010, TcpSegmentView::ACK, 5001, synack.seq + 2)).empty());
  CHECK(f.exchange(f.segment(client, 40011, TcpSegmentView::ACK, 5001, synack.seq + 1)).empty());
  CHECK(f.exchange(f.segment(client, 40010, TcpSegmentView::ACK, 6001, synack.seq + 1)).empty());
  CHECK(f.exchange(f.segment({198, 18, 99, 9}, 40010, TcpSegmentView::ACK, 5001, synack.seq + 1)).empty());
  CHECK(f.defense->counters().syn_cookies_bad == 4);
  CHECK(f.defense->counters().syn_cookies_ok == 0);
  CHECK(f.accepted.empty());
  CHECK(f.pcbs_for(40010) + f.pcbs_for(40011) == 0);
  CHECK(f.node->counters().rx_filtered_by_stage[static_cast<size_t>(InputStage::admit)] == 4);
  // The real answer still works afterwards.
  f.exchange(f.segment(client, 40010, TcpSegmentView::ACK, 5001, synack.seq + 1));
  CHECK(f.accepted.size() == 1);
}

TEST_CASE("cookie mode off: lwIP answers the SYN itself, and an unknown ACK with RST as before") {
  Fixture f(mode(CookieMode::off));
  auto replies = f.exchange(f.segment(client, 40020, TcpSegmentView::SYN, 1000, 0, syn_options));
  REQUIRE(replies.size() == 1);
  CHECK(parse(replies[0]).has(TcpSegmentView::SYN | TcpSegmentView::ACK));
  CHECK(f.defense->counters().syn_cookies_sent == 0);
  CHECK(defense::half_open_total() == 1);  // lwIP's SYN_RCVD pcb, counted for its prefix
  replies = f.exchange(f.segment(client, 40021, TcpSegmentView::ACK, 1, 1));
  REQUIRE(replies.size() == 1);
  CHECK(parse(replies[0]).has(TcpSegmentView::RST));
  CHECK(f.defense->counters().syn_cookies_bad == 0);
}

TEST_CASE("auto mode: cookies once the listener's half-open connections reach the trigger") {
  SynDefenseConfig config = mode(CookieMode::automatic);
  config.trigger_fraction = 8.0 / 255.0;  // 8 of lwIP's backlog of 255
  config.half_open_per_prefix = 0;
  Fixture f(config);
  for (uint16_t i = 0; i < 8; ++i) {
    const std::array<uint8_t, 4> spoofed{198, 19, static_cast<uint8_t>(i), 1};
    auto replies = f.exchange(f.segment(spoofed, 1000, TcpSegmentView::SYN, 77, 0, syn_options));
    REQUIRE(replies.size() == 1);  // lwIP's own SYN-ACK: a half-open pcb each
  }
  CHECK(f.defense->counters().syn_cookies_sent == 0);
  CHECK(!f.defense->cookies_active(7000, uv_now(&f.loop)));
  CHECK(defense::half_open_total() == 8);
  // The 9th finds 8 half-open: cookies from now on, for this listener.
  auto replies = f.exchange(f.segment(client, 40030, TcpSegmentView::SYN, 1000, 0, syn_options));
  REQUIRE(replies.size() == 1);
  CHECK(f.defense->counters().syn_cookies_sent == 1);
  CHECK(f.defense->counters().syn_cookie_triggers == 1);
  CHECK(f.defense->cookies_active(7000, uv_now(&f.loop)));
  CHECK(defense::half_open_total() == 8);  // no new state
  auto synack = parse(replies[0]);
  f.exchange(f.segment(client, 40030, TcpSegmentView::ACK, 1001, synack.seq + 1));
  CHECK(f.accepted.size() == 1);
  CHECK(f.defense->counters().syn_cookies_ok == 1);
  // A retransmitted SYN of one of lwIP's own half-open handshakes still goes to lwIP.
  replies = f.exchange(f.segment({198, 19, 0, 1}, 1000, TcpSegmentView::SYN, 77, 0, syn_options));
  CHECK(f.defense->counters().syn_cookies_sent == 1);
}

TEST_CASE("admission: a prefix at its half-open cap gets cookies (auto) or is dropped (off)") {
  for (CookieMode m : {CookieMode::automatic, CookieMode::off}) {
    CAPTURE(defense::to_string(m));
    REQUIRE(defense::half_open_total() == 0);
    SynDefenseConfig config = mode(m);
    config.half_open_per_prefix = 3;
    Fixture f(config);
    for (uint16_t port = 2000; port < 2003; ++port)
      REQUIRE(f.exchange(f.segment({198, 18, 50, 1}, port, TcpSegmentView::SYN, 1, 0, syn_options)).size() == 1);
    CHECK(defense::half_open_of(defense::source_prefix(*IpAddress::parse("198.18.50.77"))) == 3);
    // Another host of the same /24.
    auto replies = f.exchange(f.segment({198, 18, 50, 2}, 2003, TcpSegmentView::SYN, 1, 0, syn_options));
    if (m == CookieMode::off) {
      CHECK(replies.empty());
      CHECK(f.defense->counters().admission_half_open_dropped == 1);
    } else {
      CHECK(replies.size() == 1);
      CHECK(f.defense->counters().admission_half_open_cookied == 1);
      CHECK(f.defense->counters().syn_cookies_sent == 1);
    }
    // Another prefix is not affected.
    CHECK(f.exchange(f.segment({198, 18, 51, 1}, 2004, TcpSegmentView::SYN, 1, 0, syn_options)).size() == 1);
    CHECK(defense::half_open_total() == 4);
  }
}

TEST_CASE("admission: a prefix at its connection cap is refused, then admitted once one closes") {
  SynDefenseConfig config = mode(CookieMode::on);
  config.established_per_prefix = 1;
  Fixture f(config);
  auto synack = parse(f.exchange(f.segment(client, 41000, TcpSegmentView::SYN, 10, 0, syn_options)).at(0));
  f.exchange(f.segment(client, 41000, TcpSegmentView::ACK, 11, synack.seq + 1));
  REQUIRE(f.accepted.size() == 1);
  CHECK(defense::established_of(defense::source_prefix(*IpAddress::parse("198.18.11.2"))) == 1);
  CHECK(f.exchange(f.segment(client, 41001, TcpSegmentView::SYN, 10, 0, syn_options)).empty());
  CHECK(f.defense->counters().admission_established_refused == 1);
  // The first connection ends (aborted: lwIP frees its pcb): the prefix may connect again.
  f.accepted[0]->connection->abort();
  f.accepted.clear();
  CHECK(defense::established_of(defense::source_prefix(*IpAddress::parse("198.18.11.2"))) == 0);
  CHECK(f.exchange(f.segment(client, 41001, TcpSegmentView::SYN, 10, 0, syn_options)).size() == 1);
}

TEST_CASE("cookie mode in the lwIP lab: lwIP's own client connects through a cookie and data flows both ways") {
  for (int family : {4, 6}) {
    CAPTURE(family);
    testing::PeerLab lab(family);
    SynDefense defense(*lab.node, mode(CookieMode::on));
    lab.connect();
    CHECK(defense.counters().syn_cookies_sent == 1);
    CHECK(defense.counters().syn_cookies_ok == 1);
    // Both ends name the connection alike (client ISN << 32 | server ISN, the cookie):
    // the client's registrations and the moves that need them depend on it.
    REQUIRE(lab.client.connection->pcb() != nullptr);
    REQUIRE(lab.server.connection->pcb() != nullptr);
    CHECK(connection_id(lab.server.connection->pcb()) != 0);
    CHECK(connection_id(lab.server.connection->pcb()) == connection_id(lab.client.connection->pcb()));
    auto up = testing::pattern(300'000, 1);
    auto down = testing::pattern(200'000, 2);
    lab.client.send(up);
    lab.server.send(down);
    lab.run([&] { return lab.server.received.size() == up.size() && lab.client.received.size() == down.size(); });
    CHECK(lab.server.received == up);
    CHECK(lab.client.received == down);
    CHECK(lab.rst_seen == 0);
  }
}

TEST_CASE("cookie mode: a moved-in connection's first packet unparks it, it is no forged cookie ACK") {
  testing::PeerLab lab;
  migrate::MigrationGuard guard(*lab.node);
  SynDefense defense(*lab.node, mode(CookieMode::on));
  lab.connect();  // through a cookie
  auto before = testing::pattern(20'000, 3);
  lab.client.send(before);
  lab.run([&] { return lab.server.received.size() == before.size(); });

  // A moves its end to B (same process: B's listener is the lab's one, on port 7000 of
  // every address). The client follows; its first segment to B matches no pcb lwIP
  // knows (the import is parked) and carries no cookie: the guard must unpark it first.
  auto moved = testing::move_server_end(lab, guard);
  tcp_pcb* client = lab.client.connection->pcb();
  tcp_pcb* const pcbs[] = {client};
  migrate::rewrite_remote(pcbs, lab.b(), 0);
  auto after = testing::pattern(30'000, 4);
  lab.client.send(after);
  lab.server.send(after);
  lab.run([&] {
    return lab.server.received.size() == before.size() + after.size() && lab.client.received.size() == after.size();
  });
  CHECK(!guard.is_parked(moved.parked));
  CHECK(guard.counters().unparked == 1);
  CHECK(defense.counters().syn_cookies_bad == 0);
  CHECK(lab.client.received == after);
  CHECK(lab.server.received.size() == before.size() + after.size());
  lab.server.connection.reset();
}

TEST_CASE("auto mode: the flood detector's alarm turns cookies on, its all-clear off") {
  // A detector on 5 ms bins with a hair trigger, so real (slept) time can drive it: what
  // is tested is the wiring (SYNs fed, timer closes bins, alarm -> cookies), not the tuning.
  SynDefenseConfig config = mode(CookieMode::automatic);
  config.half_open_per_prefix = 0;
  config.detector.bin_ms = 5;
  config.detector.warmup_bins = 2;
  config.detector.min_rate = 0;
  config.detector.sigma_floor = 1;
  config.detector.drift_k = 1;
  config.detector.threshold_h = 1;
  // Long enough that a loaded machine's late wake-up (a 6 ms sleep taking tens of ms) does
  // not clear the alarm before it is checked.
  config.detector.clear_ms = 300;
  Fixture f(config);
  // The detector's timer is unref'd: a referenced handle keeps the loop alive, as the
  // server's links do, or UV_RUN_NOWAIT would run no timer at all.
  UvHandle<uv_timer_t> keepalive;
  REQUIRE(uv_timer_init(&f.loop, keepalive.get()) == 0);
  keepalive.mark_initialized();
  uv_timer_start(keepalive.get(), [](uv_timer_t*) {}, 1'000'000, 0);
  auto idle_bins = [&f](int n) {
    for (int i = 0; i < n; ++i) {
      uv_sleep(6);
      uv_update_time(&f.loop);
      uv_run(&f.loop, UV_RUN_NOWAIT);  // the detector's timer closes the bins
    }
  };
  idle_bins(4);
  CHECK(f.defense->detector().state().syn.bins >= 3);
  CHECK_FALSE(f.defense->detector().alarmed());
  for (uint8_t i = 0; i < 10; ++i) {
    const std::array<uint8_t, 4> spoofed{198, 19, 7, i};
    auto replies = f.exchange(f.segment(spoofed, 1000, TcpSegmentView::SYN, 77, 0, syn_options));
    REQUIRE(replies.size() == 1);  // lwIP's SYN-ACKs (or cookies, if a bin closed in between)
  }
  const uint64_t cookies_before = f.defense->counters().syn_cookies_sent;
  idle_bins(1);  // the bin with the 10 SYNs closes: 2000 SYN/s against a baseline of 0
  REQUIRE(f.defense->detector().alarmed());
  CHECK(f.defense->detector().state().alarms == 1);
  CHECK(f.defense->cookies_active(7000, uv_now(&f.loop)));
  auto replies = f.exchange(f.segment(client, 40031, TcpSegmentView::SYN, 1000, 0, syn_options));
  REQUIRE(replies.size() == 1);
  CHECK(f.defense->counters().syn_cookies_sent == cookies_before + 1);
  // Quiet: all-clear (bounded wait, a hang detector, not a timing assertion).
  for (int i = 0; i < 2000 && f.defense->detector().alarmed(); ++i) idle_bins(1);
  CHECK_FALSE(f.defense->detector().alarmed());
  CHECK_FALSE(f.defense->cookies_active(7000, uv_now(&f.loop)));
}

TEST_CASE("flood detector off: no timer, no alarm, cookies only from the backlog trigger") {
  SynDefenseConfig config = mode(CookieMode::automatic);
  config.flood_detector = false;
  config.detector.bin_ms = 5;
  config.detector.warmup_bins = 0;
  config.detector.min_rate = 0;
  config.detector.threshold_h = 1;
  Fixture f(config);
  for (uint8_t i = 0; i < 10; ++i) {
    const std::array<uint8_t, 4> spoofed{198, 19, 8, i};
    f.exchange(f.segment(spoofed, 1000, TcpSegmentView::SYN, 77, 0, syn_options));
  }
  uv_sleep(12);
  uv_update_time(&f.loop);
  uv_run(&f.loop, UV_RUN_NOWAIT);
  CHECK(f.defense->detector().state().syn.bins == 0);
  CHECK_FALSE(f.defense->cookies_active(7000, uv_now(&f.loop)));
}

// Seed 004's SYN checker (checker mode): on the auto triggers, each SYN is handed to lwIP
// with the configured probability and dropped otherwise; it never sends a cookie.
TEST_CASE("checker mode: lwIP alone until the backlog trigger, then SYNs answered by chance, never a cookie") {
  for (double probability : {1.0, 0.0}) {
    CAPTURE(probability);
    SynDefenseConfig config = mode(CookieMode::checker);
    config.trigger_fraction = 8.0 / 255.0;
    config.half_open_per_prefix = 0;
    config.checker_probability = probability;
    config.checker_seed = 1;
    Fixture f(config);
    for (uint16_t i = 0; i < 8; ++i) {
      const std::array<uint8_t, 4> spoofed{198, 19, static_cast<uint8_t>(i), 2};
      REQUIRE(f.exchange(f.segment(spoofed, 1000, TcpSegmentView::SYN, 77, 0, syn_options)).size() == 1);
    }
    CHECK_FALSE(f.defense->checker_active(7000, uv_now(&f.loop)));
    CHECK(f.defense->counters().syn_checker_passed == 0);
    // The 9th finds the trigger: the checker decides from now on.
    auto replies = f.exchange(f.segment(client, 40040, TcpSegmentView::SYN, 1000, 0, syn_options));
    CHECK(f.defense->counters().syn_checker_triggers == 1);
    CHECK(f.defense->checker_active(7000, uv_now(&f.loop)));
    CHECK_FALSE(f.defense->cookies_active(7000, uv_now(&f.loop)));
    CHECK(f.defense->counters().syn_cookies_sent == 0);
    if (probability == 1.0) {
      // Chosen: lwIP's own SYN-ACK and half-open pcb; the ACK completes the handshake there.
      REQUIRE(replies.size() == 1);
      auto synack = parse(replies[0]);
      CHECK(synack.has(TcpSegmentView::SYN | TcpSegmentView::ACK));
      CHECK(f.defense->counters().syn_checker_passed == 1);
      CHECK(Fixture::pcbs_for(40040) == 1);
      f.exchange(f.segment(client, 40040, TcpSegmentView::ACK, 1001, synack.seq + 1));
      CHECK(f.accepted.size() == 1);
      CHECK(f.defense->counters().syn_cookies_ok == 0);
    } else {
      CHECK(replies.empty());
      CHECK(f.defense->counters().syn_checker_dropped == 1);
      CHECK(Fixture::pcbs_for(40040) == 0);
      // A forged ACK is lwIP's business as without a defense: its RST, no cookie check.
      replies = f.exchange(f.segment(client, 40041, TcpSegmentView::ACK, 1, 1));
      REQUIRE(replies.size() == 1);
      CHECK(parse(replies[0]).has(TcpSegmentView::RST));
      CHECK(f.defense->counters().syn_cookies_bad == 0);
    }
  }
}

TEST_CASE("checker mode: answers about the configured share of SYNs while on") {
  SynDefenseConfig config = mode(CookieMode::checker);
  config.trigger_fraction = 1.0 / 255.0;
  config.half_open_per_prefix = 0;
  config.checker_probability = 0.25;
  config.checker_seed = 42;  // fixed: the count below is deterministic
  Fixture f(config);
  size_t answered = 0;
  for (uint16_t i = 0; i < 400; ++i) {
    const std::array<uint8_t, 4> spoofed{198, 19, static_cast<uint8_t>(i / 200), static_cast<uint8_t>(i % 200)};
    answered += f.exchange(f.segment(spoofed, 1000, TcpSegmentView::SYN, 77, 0, syn_options)).size();
  }
  const auto& c = f.defense->counters();
  CHECK(c.syn_checker_passed + c.syn_checker_dropped == 399);  // the first SYN found no trigger
  CHECK(answered == 1 + c.syn_checker_passed);
  CHECK(c.syn_checker_passed >= 60);  // 25 % of 399, about 100
  CHECK(c.syn_checker_passed <= 140);
  CHECK(c.syn_cookies_sent == 0);
}

TEST_CASE("checker mode: parsed and named") {
  CHECK(defense::parse_cookie_mode("checker") == CookieMode::checker);
  CHECK(defense::to_string(CookieMode::checker) == "checker");
  CHECK_FALSE(defense::parse_cookie_mode("check"));
}

TEST_CASE("SYN-ACK budget: on a busy link a flooding prefix's SYNs beyond it go unanswered, counted") {
  SynDefenseConfig config = mode(CookieMode::on);
  config.synack_budget = {10, 3, 64, 7};  // 3 at once, then 10/s
  config.syn_retx_check = defense::RetxCheck::off;  // the budget alone (the check has its own tests)
  Fixture f(config);
  constexpr std::array<uint8_t, 4> flooder{198, 19, 7, 1};
  std::vector<std::vector<uint8_t>> batch;
  for (uint16_t port = 41000; port < 41040; ++port)
    batch.push_back(f.segment(flooder, port, TcpSegmentView::SYN, 1000, 0, syn_options));
  // A legitimate client's SYN in the same busy batch, from another prefix.
  batch.push_back(f.segment(client, 40030, TcpSegmentView::SYN, 7000, 0, syn_options));
  REQUIRE(batch.size() >= busy_batch_packets);
  f.link->sent.clear();
  f.link->inject_batch(batch);
  uv_run(&f.loop, UV_RUN_NOWAIT);
  CHECK(f.link->sent.size() == 4);  // the flooder's burst of 3, and the client's
  CHECK(f.defense->counters().synack_budget_dropped == 37);
  CHECK(f.defense->counters().syn_cookies_sent == 4);
  CHECK(f.pcbs_for(41005) == 0);  // unanswered and stateless: lwIP never saw it
  auto synack = parse(f.link->sent.back());
  CHECK(synack.dst_port == 40030);
  f.exchange(f.segment(client, 40030, TcpSegmentView::ACK, 7001, synack.seq + 1));
  CHECK(f.accepted.size() == 1);
  // One packet at a time the link keeps up: no budget, the same prefix is answered.
  CHECK(f.exchange(f.segment(flooder, 41100, TcpSegmentView::SYN, 1000, 0, syn_options)).size() == 1);
  CHECK(f.defense->counters().synack_budget_dropped == 37);
}

TEST_CASE("SYN-ACK budget 0: every SYN of a busy batch in cookie mode is answered") {
  SynDefenseConfig config = mode(CookieMode::on);
  config.synack_budget.per_second = 0;
  config.syn_retx_check = defense::RetxCheck::off;
  Fixture f(config);
  constexpr std::array<uint8_t, 4> flooder{198, 19, 7, 1};
  std::vector<std::vector<uint8_t>> batch;
  for (uint16_t port = 41100; port < 41600; ++port)
    batch.push_back(f.segment(flooder, port, TcpSegmentView::SYN, 1000, 0, syn_options));
  f.link->sent.clear();
  f.link->inject_batch(batch);
  uv_run(&f.loop, UV_RUN_NOWAIT);
  CHECK(f.link->sent.size() == 500);
  CHECK(f.defense->counters().synack_budget_dropped == 0);
}

TEST_CASE("retransmission check, auto: on a busy link a SYN's first copy goes unanswered, its retransmission connects") {
  SynDefenseConfig config = mode(CookieMode::on);
  config.syn_retx_busy_hold_ms = 0;  // the check only inside busy batches (no hold to wait out)
  Fixture f(config);
  constexpr std::array<uint8_t, 4> flooder{198, 19, 7, 1};
  auto busy_batch = [&](uint16_t first_port) {
    std::vector<std::vector<uint8_t>> batch;
    for (uint16_t port = first_port; port < first_port + 40; ++port)
      batch.push_back(f.segment(flooder, port, TcpSegmentView::SYN, 1000, 0, syn_options));
    batch.push_back(f.segment(client, 40040, TcpSegmentView::SYN, 7000, 0, syn_options));
    f.link->sent.clear();
    f.link->inject_batch(batch);
    uv_run(&f.loop, UV_RUN_NOWAIT);
  };
  busy_batch(42000);
  CHECK(f.link->sent.empty());  // nobody answered, the client neither: first copies all
  CHECK(f.defense->counters().syn_first_dropped == 41);
  CHECK(f.defense->counters().syn_cookies_sent == 0);
  busy_batch(42100);  // new spoofed SYNs, and the client's retransmission (same port, same ISN)
  REQUIRE(f.link->sent.size() == 1);
  CHECK(f.defense->counters().syn_first_dropped == 81);
  CHECK(f.defense->counters().syn_retx_answered == 1);
  auto synack = parse(f.link->sent.back());
  CHECK(synack.dst_port == 40040);
  CHECK(synack.ack == 7001);
  f.exchange(f.segment(client, 40040, TcpSegmentView::ACK, 7001, synack.seq + 1));
  CHECK(f.accepted.size() == 1);
  // One packet at a time the link keeps up: answered at once, as without the check.
  CHECK(f.exchange(f.segment(flooder, 42200, TcpSegmentView::SYN, 1000, 0, syn_options)).size() == 1);
  CHECK(f.defense->counters().syn_first_dropped == 81);
}

TEST_CASE("retransmission check off: a busy batch is answered as before") {
  SynDefenseConfig config = mode(CookieMode::on);
  config.syn_retx_check = defense::RetxCheck::off;
  config.synack_budget.per_second = 0;
  Fixture f(config);
  std::vector<std::vector<uint8_t>> batch;
  for (uint16_t port = 43000; port < 43040; ++port)
    batch.push_back(f.segment(client, port, TcpSegmentView::SYN, 1000, 0, syn_options));
  f.link->inject_batch(batch);
  uv_run(&f.loop, UV_RUN_NOWAIT);
  CHECK(f.link->sent.size() == 40);
  CHECK(f.defense->counters().syn_first_dropped == 0);
}

TEST_CASE("retransmission check on: segments that are no SYN, or malformed, record nothing") {
  SynDefenseConfig config = mode(CookieMode::on);
  config.syn_retx_check = defense::RetxCheck::on;
  Fixture f(config);
  // SYN+RST, SYN+ACK and a SYN with a broken checksum, all with the client's tuple and ISN.
  f.exchange(f.segment(client, 40050, TcpSegmentView::SYN | TcpSegmentView::RST, 9000, 0, syn_options));
  f.exchange(f.segment(client, 40050, TcpSegmentView::SYN | TcpSegmentView::ACK, 9000, 1, syn_options));
  auto broken = f.segment(client, 40050, TcpSegmentView::SYN, 9000, 0, syn_options);
  broken[36] ^= 0xff;  // the TCP checksum (IPv4 header 20 bytes, checksum at 16)
  f.exchange(broken);
  CHECK(f.defense->counters().syn_first_dropped == 0);
  CHECK(f.defense->counters().syn_cookies_sent == 0);
  // So the real SYN is still a first copy, and only its retransmission is answered.
  CHECK(f.exchange(f.segment(client, 40050, TcpSegmentView::SYN, 9000, 0, syn_options)).empty());
  CHECK(f.defense->counters().syn_first_dropped == 1);
  auto answer = f.exchange(f.segment(client, 40050, TcpSegmentView::SYN, 9000, 0, syn_options));
  REQUIRE(answer.size() == 1);
  CHECK(parse(answer[0]).ack == 9001);
  CHECK(f.defense->counters().syn_retx_answered == 1);
  // A new ISN on the same tuple is a new connection: first copy again.
  CHECK(f.exchange(f.segment(client, 40050, TcpSegmentView::SYN, 9100, 0, syn_options)).empty());
  CHECK(f.defense->counters().syn_first_dropped == 2);
}

TEST_CASE("retransmission check: parsed and named") {
  CHECK(defense::parse_retx_check("auto") == defense::RetxCheck::automatic);
  CHECK(defense::parse_retx_check("off") == defense::RetxCheck::off);
  CHECK(defense::parse_retx_check("on") == defense::RetxCheck::on);
  CHECK(defense::to_string(defense::RetxCheck::automatic) == "auto");
  CHECK_FALSE(defense::parse_retx_check("yes"));
}

namespace {
// A SYN's options: syn_options, then the owner proof a client channel's signer writes.
std::vector<uint8_t> proven_options(const OwnerProofSigner& signer, uint32_t isn, uint16_t port) {
  std::vector<uint8_t> options(syn_options.begin(), syn_options.end());
  options.resize(syn_options.size() + signer.option_length());
  signer.write_option(isn, port, std::span<uint8_t>(options).subspan(syn_options.size()));
  return options;
}
}  // namespace

TEST_CASE("owner-proven SYNs skip the first-SYN drop, the SYN-ACK budget and the half-open cap; others do not") {
  // One client behind one NAT address opens many carriers at once (tests/netns
  // nat_handover's "many": 1000): unproven, its SYNs would be throttled like a flood.
  SynDefenseConfig config = mode(CookieMode::on);
  config.syn_retx_check = defense::RetxCheck::on;
  config.synack_budget = {1, 1, 64, 7};
  Fixture f(config);
  OwnerProofVerifier verifier(*f.node);  // the authenticate stage, before the defense
  std::array<uint8_t, 64> handshake_hash{};
  handshake_hash.fill(0x5a);
  crypto::PublicKey owner{};
  owner.fill(0x33);
  int channel = 0;
  verifier.add_channel(&channel, handshake_hash, owner);
  const OwnerProofSigner signer(handshake_hash);

  // Unproven: the first copy is dropped (the check is on).
  CHECK(f.exchange(f.segment(client, 44000, TcpSegmentView::SYN, 5000, 0, syn_options)).empty());
  CHECK(f.defense->counters().syn_first_dropped == 1);
  // Proven, 40 of them in one busy batch: every one answered at once with a cookie.
  std::vector<std::vector<uint8_t>> batch;
  for (uint16_t port = 44100; port < 44140; ++port)
    batch.push_back(f.segment(client, port, TcpSegmentView::SYN, 6000 + port, 0, proven_options(signer, 6000 + port, 7000)));
  REQUIRE(batch.size() >= busy_batch_packets);
  f.link->sent.clear();
  f.link->inject_batch(batch);
  uv_run(&f.loop, UV_RUN_NOWAIT);
  CHECK(f.link->sent.size() == 40);
  CHECK(f.defense->counters().syn_proven_exempt == 40);
  CHECK(f.defense->counters().syn_first_dropped == 1);
  CHECK(f.defense->counters().synack_budget_dropped == 0);
  CHECK(verifier.counters().syns_proven == 40);
  // The cookie's ACK makes the connection, owned by the channel's key.
  REQUIRE_FALSE(f.link->sent.empty());
  auto synack = parse(f.link->sent.front());
  REQUIRE(synack.dst_port == 44100);
  f.exchange(f.segment(client, 44100, TcpSegmentView::ACK, 6000 + 44100 + 1, synack.seq + 1));
  REQUIRE(f.accepted.size() == 1);
  auto got_owner = pcb_owner(f.accepted[0]->connection->pcb());
  REQUIRE(got_owner);
  CHECK(*got_owner == owner_key_of(owner));

  // A proof made for another ISN: forged, dropped by the verifier, never answered.
  CHECK(f.exchange(f.segment(client, 44200, TcpSegmentView::SYN, 7777, 0, proven_options(signer, 7778, 7000))).empty());
  CHECK(verifier.counters().syns_forged == 1);
  // A proven flow's 4-tuple with another ISN and no proof: a plain SYN again (first copy).
  CHECK(f.exchange(f.segment(client, 44101, TcpSegmentView::SYN, 1234, 0, syn_options)).empty());
  CHECK(f.defense->counters().syn_first_dropped == 2);
  CHECK(f.defense->counters().syn_proven_exempt == 40);
}

TEST_CASE("owner-proven SYNs: below the trigger they go to lwIP even when their prefix is at its half-open cap") {
  SynDefenseConfig config = mode(CookieMode::automatic);
  config.half_open_per_prefix = 2;
  config.syn_retx_check = defense::RetxCheck::off;
  Fixture f(config);
  OwnerProofVerifier verifier(*f.node);
  std::array<uint8_t, 64> handshake_hash{};
  handshake_hash.fill(0x17);
  crypto::PublicKey owner{};
  int channel = 0;
  verifier.add_channel(&channel, handshake_hash, owner);
  const OwnerProofSigner signer(handshake_hash);
  for (uint16_t port = 45000; port < 45002; ++port)
    f.exchange(f.segment(client, port, TcpSegmentView::SYN, 100, 0, syn_options));
  CHECK(f.pcbs_for(45000) == 1);
  CHECK(f.pcbs_for(45001) == 1);
  // The third unproven one: at the cap, a cookie instead of a pcb.
  f.exchange(f.segment(client, 45002, TcpSegmentView::SYN, 100, 0, syn_options));
  CHECK(f.pcbs_for(45002) == 0);
  CHECK(f.defense->counters().admission_half_open_cookied == 1);
  // A proven one: lwIP's own half-open pcb, no cookie.
  auto answer = f.exchange(f.segment(client, 45003, TcpSegmentView::SYN, 300, 0, proven_options(signer, 300, 7000)));
  CHECK(answer.size() == 1);
  CHECK(f.pcbs_for(45003) == 1);
  CHECK(f.defense->counters().admission_half_open_cookied == 1);
  CHECK(f.defense->counters().syn_proven_exempt == 1);
  CHECK(f.defense->counters().syn_cookies_sent == 1);
}
