// AcmFilter: an authenticated ACM moves connections only when it is fresh (sequence above
// the last applied, nonce unseen, issued within the age limit), comes from the host it
// moves, names connections we have there, and points to a usable address. Every refusal
// leaves the filter's state as it was.
#include "stack/control/acm_filter.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

using namespace roam;
using control::AcmFilter;
using control::AcmVerdict;

const uint64_t now = 1'800'000'000'000;
const IpAddress server_a = *IpAddress::parse("198.18.12.2");
const IpAddress server_b = *IpAddress::parse("198.18.13.2");
const IpAddress other = *IpAddress::parse("198.18.14.2");

const std::vector<control::ClientConnection> ours = {
    {11, server_a, 7000}, {12, server_a, 7000}, {13, server_a, 8000}, {14, other, 7000}};

control::AddressChange acm(uint64_t sequence, std::vector<uint64_t> ids = {11, 12}) {
  control::AddressChange m;
  m.sequence = sequence;
  m.nonce.fill(static_cast<uint8_t>(sequence));
  m.issued_at_ms = now - 100;
  m.old_address = server_a;
  m.new_address = server_b;
  m.old_port = m.new_port = 7000;
  m.connection_ids = std::move(ids);
  return m;
}

TEST_CASE("a fresh ACM about our connections applies to exactly those") {
  AcmFilter filter;
  auto d = filter.check(acm(5), server_a, ours, now);
  CHECK(d.verdict == AcmVerdict::apply);
  CHECK(d.connections == std::vector<uint64_t>{11, 12});
  CHECK(d.unknown_ids == 0);
}

TEST_CASE("replayed and re-ordered ACMs are refused once a later one applied") {
  AcmFilter filter;
  auto first = acm(5), second = acm(6);
  REQUIRE(filter.check(second, server_a, ours, now).verdict == AcmVerdict::apply);
  filter.remember(second, now);
  CHECK(filter.check(second, server_a, ours, now).verdict == AcmVerdict::replayed);  // same again
  CHECK(filter.check(first, server_a, ours, now).verdict == AcmVerdict::replayed);   // older, arriving late
  auto same_nonce = acm(9);
  same_nonce.nonce = second.nonce;
  CHECK(filter.check(same_nonce, server_a, ours, now).verdict == AcmVerdict::replayed);
  CHECK(filter.check(acm(7), server_a, ours, now).verdict == AcmVerdict::apply);
}

TEST_CASE("stale and future ACMs are refused") {
  AcmFilter filter(control::AcmLimits{30'000, 5'000});
  auto old = acm(1);
  old.issued_at_ms = now - 30'001;
  CHECK(filter.check(old, server_a, ours, now).verdict == AcmVerdict::stale);
  old.issued_at_ms = now - 30'000;
  CHECK(filter.check(old, server_a, ours, now).verdict == AcmVerdict::apply);
  auto future = acm(2);
  future.issued_at_ms = now + 5'001;
  CHECK(filter.check(future, server_a, ours, now).verdict == AcmVerdict::from_future);
}

TEST_CASE("a host moves only its own connections, to a usable address") {
  AcmFilter filter;
  // Sent by another host on its channel, naming server A's connections.
  CHECK(filter.check(acm(1), other, ours, now).verdict == AcmVerdict::wrong_peer);
  auto loopback = acm(2);
  loopback.new_address = *IpAddress::parse("127.0.0.1");
  CHECK(filter.check(loopback, server_a, ours, now).verdict == AcmVerdict::bad_address);
  auto multicast = acm(3);
  multicast.new_address = *IpAddress::parse("224.0.0.1");
  CHECK(filter.check(multicast, server_a, ours, now).verdict == AcmVerdict::bad_address);
  auto family = acm(4);
  family.new_address = *IpAddress::parse("2001:db8:13::2");
  CHECK(filter.check(family, server_a, ours, now).verdict == AcmVerdict::bad_address);
  CHECK_FALSE(control::acceptable_new_address(*IpAddress::parse("::1"), *IpAddress::parse("::2")));
  CHECK_FALSE(control::acceptable_new_address(*IpAddress::parse("::ffff:198.18.1.1"),
                                              *IpAddress::parse("2001:db8::1")));
  CHECK(control::acceptable_new_address(*IpAddress::parse("2001:db8:13::2"),
                                        *IpAddress::parse("2001:db8:12::2")));
}

TEST_CASE("unknown connections: none known refuses; some known applies to those only") {
  AcmFilter filter;
  auto none = filter.check(acm(1, {99, 98}), server_a, ours, now);
  CHECK(none.verdict == AcmVerdict::unknown_connections);
  CHECK(none.connections.empty());
  CHECK(none.unknown_ids == 2);
  // Id 14 is ours but with another host; id 13 is ours with A but on another port.
  CHECK(filter.check(acm(2, {14, 13}), server_a, ours, now).verdict == AcmVerdict::unknown_connections);
  auto some = filter.check(acm(3, {11, 99, 11}), server_a, ours, now);
  CHECK(some.verdict == AcmVerdict::apply);
  CHECK(some.connections == std::vector<uint64_t>{11});
  CHECK(some.unknown_ids == 1);
}

TEST_CASE("global scope moves every connection to the old endpoint (or every port)") {
  AcmFilter filter;
  auto global = acm(1, {});
  global.scope = control::AcmScope::global;
  CHECK(filter.check(global, server_a, ours, now).connections == std::vector<uint64_t>{11, 12});
  global.old_port = 0;
  CHECK(filter.check(global, server_a, ours, now).connections == std::vector<uint64_t>{11, 12, 13});
}

TEST_CASE("refusals change nothing; remembered nonces expire with the age limit") {
  AcmFilter filter(control::AcmLimits{1'000, 0});
  auto stale = acm(50);
  stale.issued_at_ms = now - 5'000;
  REQUIRE(filter.check(stale, server_a, ours, now).verdict == AcmVerdict::stale);
  CHECK(filter.last_sequence() == 0);
  CHECK(filter.check(acm(3), server_a, ours, now).verdict == AcmVerdict::apply);  // 50 did not count
  filter.remember(acm(3), now);
  CHECK(filter.last_sequence() == 3);
}

TEST_CASE("a transfer notification needs no connection, but is as fresh and as bound to its sender as any ACM") {
  AcmFilter filter;
  auto transfer = acm(5, {});
  transfer.scope = control::AcmScope::transfer;
  transfer.old_port = 0;
  transfer.new_port = 0;
  // A client with no connection at all takes it (new connections go to B).
  auto d = filter.check(transfer, server_a, {}, now);
  CHECK(d.verdict == AcmVerdict::apply);
  CHECK(d.connections.empty());
  // It moves none of the connections we do have either: their own ACMs do.
  CHECK(filter.check(transfer, server_a, ours, now).connections.empty());
  CHECK(filter.check(transfer, other, {}, now).verdict == AcmVerdict::wrong_peer);
  auto stale = transfer;
  stale.issued_at_ms = now - 3'600'000;
  CHECK(filter.check(stale, server_a, {}, now).verdict == AcmVerdict::stale);
  auto loopback = transfer;
  loopback.new_address = *IpAddress::parse("127.0.0.1");
  CHECK(filter.check(loopback, server_a, {}, now).verdict == AcmVerdict::bad_address);
  filter.remember(transfer, now);
  CHECK(filter.check(transfer, server_a, {}, now).verdict == AcmVerdict::replayed);
  // The move's own ACM after it (a higher sequence) still applies.
  CHECK(filter.check(acm(6), server_a, ours, now).verdict == AcmVerdict::apply);
}

}  // namespace
