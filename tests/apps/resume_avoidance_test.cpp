// Which members a client's resumes stay away from (PROTOCOL.md 14.5, apps/resume_avoidance):
// a member it resumed away from, for every connection; a member that refused (33) or did
// not answer, for that connection only; each for its time, then no more.
#include "apps/resume_avoidance.hpp"

#include <doctest/doctest.h>

#include <algorithm>

namespace {

using roam::IpAddress;
using roam::ResumeAvoidance;

bool has(const std::vector<IpAddress>& v, const IpAddress& a) { return std::find(v.begin(), v.end(), a) != v.end(); }

}  // namespace

TEST_CASE("resume avoidance: a member left is avoided for every connection until it expires") {
  ResumeAvoidance a;
  const IpAddress dead = *IpAddress::parse("198.18.12.2");
  CHECK(a.avoided(1, 1000).empty());
  a.left(dead, 1000);
  CHECK(has(a.avoided(1, 1000), dead));
  CHECK(has(a.avoided(2, 1000 + ResumeAvoidance::left_for_ms - 1), dead));
  CHECK_FALSE(a.retrying(1, 1000));  // leaving a member is no retry of a connection
  CHECK(a.avoided(1, 1000 + ResumeAvoidance::left_for_ms).empty());
}

TEST_CASE("resume avoidance: a member that refused or did not answer is avoided for that connection only") {
  ResumeAvoidance a;
  const IpAddress s2 = *IpAddress::parse("198.18.13.2"), o = *IpAddress::parse("198.18.14.2");
  a.tried(7, s2, 0);
  a.tried(7, o, 10);
  a.tried(7, s2, 20);  // again: one entry, its time renewed
  auto avoided = a.avoided(7, 20);
  CHECK(avoided.size() == 2);
  CHECK(has(avoided, s2));
  CHECK(has(avoided, o));
  CHECK(a.retrying(7, 20));
  CHECK(a.avoided(8, 20).empty());
  CHECK_FALSE(a.retrying(8, 20));
  // o's time ends first (tried at 10), s2's was renewed at 20.
  avoided = a.avoided(7, 10 + ResumeAvoidance::tried_for_ms);
  CHECK(avoided.size() == 1);
  CHECK(has(avoided, s2));
  CHECK_FALSE(a.retrying(7, 20 + ResumeAvoidance::tried_for_ms));
  a.tried(7, o, 100);
  a.forget(7);
  CHECK(a.avoided(7, 100).empty());
}

TEST_CASE("resume avoidance: a member both left and tried is named once") {
  ResumeAvoidance a;
  const IpAddress s = *IpAddress::parse("198.18.12.2");
  a.left(s, 0);
  a.tried(3, s, 0);
  CHECK(a.avoided(3, 1).size() == 1);
}
