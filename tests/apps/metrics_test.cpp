// The metrics endpoint's pure parts: which requests are answered how, and the text format.
#include <doctest/doctest.h>

#include <string>

#include "apps/metrics_http.hpp"
#include "apps/metrics_text.hpp"

namespace {

using namespace roam;
using V = HttpRequestVerdict;

TEST_CASE("metrics http: GET /metrics is answered, other paths 404, anything else 400") {
  CHECK(classify_http_request("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", 4096) == V::metrics);
  CHECK(classify_http_request("GET /metrics?name[]=x HTTP/1.0\n\n", 4096) == V::metrics);
  CHECK(classify_http_request("GET / HTTP/1.0\r\n\r\n", 4096) == V::not_found);
  CHECK(classify_http_request("GET /metricsx HTTP/1.0\r\n\r\n", 4096) == V::not_found);
  CHECK(classify_http_request("GET /metrics HTTP/1.1\r\nHost: x\r\n", 4096) == V::incomplete);
  CHECK(classify_http_request("", 4096) == V::incomplete);
  CHECK(classify_http_request("POST /metrics HTTP/1.1\r\n\r\n", 4096) == V::bad_request);
  CHECK(classify_http_request("GET /metrics\r\n\r\n", 4096) == V::bad_request);
  CHECK(classify_http_request("GET /metrics SPDY/3\r\n\r\n", 4096) == V::bad_request);
  CHECK(classify_http_request("GET metrics HTTP/1.0\r\n\r\n", 4096) == V::bad_request);
  CHECK(classify_http_request("GET  /metrics HTTP/1.0\r\n\r\n", 4096) == V::bad_request);
  // Binary bytes are refused before the request could end.
  CHECK(classify_http_request(std::string("GET /\0x", 7), 4096) == V::bad_request);
  CHECK(classify_http_request("\x16\x03\x01\x02", 4096) == V::bad_request);
  // Over the cap without an end: refused, not buffered on.
  CHECK(classify_http_request(std::string(100, 'a'), 64) == V::bad_request);
  CHECK(classify_http_request(std::string(64, 'a'), 64) == V::incomplete);
  CHECK(classify_http_request("GET /metrics HTTP/1.0\r\nX: " + std::string(100, 'a') + "\r\n\r\n", 64) ==
        V::bad_request);
}

TEST_CASE("metrics http: responses are complete HTTP/1.0 answers that close") {
  std::string ok = http_response(200, "a 1\n");
  CHECK(ok.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
  CHECK(ok.find("Content-Type: text/plain; version=0.0.4") != std::string::npos);
  CHECK(ok.find("Content-Length: 4\r\n") != std::string::npos);
  CHECK(ok.find("Connection: close\r\n\r\na 1\n") != std::string::npos);
  CHECK(http_response(400, "").rfind("HTTP/1.0 400 Bad Request\r\n", 0) == 0);
  CHECK(http_response(404, "").rfind("HTTP/1.0 404 Not Found\r\n", 0) == 0);
}

TEST_CASE("metrics text: counters and gauges with HELP and TYPE, named roamstack_<group>_<name>") {
  CounterRegistry registry;
  uint64_t imported = 7;
  registry.add("migrate", "sessions_imported", &imported);
  registry.add_gauge("migrate", "sessions", [] { return uint64_t{3}; });
  registry.add_total("node", "rx_foreign", [] { return uint64_t{5}; });
  std::string text = metrics_text({&registry, nullptr});
  CHECK(text ==
        "# HELP roamstack_migrate_sessions_imported Roamstack migrate counter sessions_imported\n"
        "# TYPE roamstack_migrate_sessions_imported counter\n"
        "roamstack_migrate_sessions_imported 7\n"
        "# HELP roamstack_migrate_sessions Roamstack migrate gauge sessions\n"
        "# TYPE roamstack_migrate_sessions gauge\n"
        "roamstack_migrate_sessions 3\n"
        "# HELP roamstack_node_rx_foreign Roamstack node counter rx_foreign\n"
        "# TYPE roamstack_node_rx_foreign counter\n"
        "roamstack_node_rx_foreign 5\n");
  imported = 8;
  CHECK(metrics_text({&registry}).find("roamstack_migrate_sessions_imported 8\n") != std::string::npos);
  CounterRegistry losses;
  add_connection_losses(losses);
  CHECK(metrics_text({&losses}).find("\nroamstack_connections_lost_reset_by_peer ") != std::string::npos);
}

TEST_CASE("metrics text: a histogram as cumulative _bucket lines to +Inf, then _sum and _count") {
  CounterRegistry registry;
  uint64_t pokes = 1;
  Histogram changeover({0.005, 0.1, 1});
  registry.add("changeover", "changeover_pokes", &pokes);
  registry.add_histogram("changeover", "seconds", &changeover, "Seconds of each changeover");
  std::string text = metrics_text({&registry});
  CHECK(text ==
        "# HELP roamstack_changeover_changeover_pokes Roamstack changeover counter changeover_pokes\n"
        "# TYPE roamstack_changeover_changeover_pokes counter\n"
        "roamstack_changeover_changeover_pokes 1\n"
        "# HELP roamstack_changeover_seconds Seconds of each changeover\n"
        "# TYPE roamstack_changeover_seconds histogram\n"
        "roamstack_changeover_seconds_bucket{le=\"0.005\"} 0\n"
        "roamstack_changeover_seconds_bucket{le=\"0.1\"} 0\n"
        "roamstack_changeover_seconds_bucket{le=\"1\"} 0\n"
        "roamstack_changeover_seconds_bucket{le=\"+Inf\"} 0\n"
        "roamstack_changeover_seconds_sum 0\n"
        "roamstack_changeover_seconds_count 0\n");
  changeover.observe(0.004);
  changeover.observe(0.25);
  changeover.observe(3);
  text = metrics_text({&registry});
  CHECK(text.find("roamstack_changeover_seconds_bucket{le=\"0.005\"} 1\n"
                  "roamstack_changeover_seconds_bucket{le=\"0.1\"} 1\n"
                  "roamstack_changeover_seconds_bucket{le=\"1\"} 2\n"
                  "roamstack_changeover_seconds_bucket{le=\"+Inf\"} 3\n"
                  "roamstack_changeover_seconds_sum 3.254\n"
                  "roamstack_changeover_seconds_count 3\n") != std::string::npos);
  // A second registration under the same name is ignored; remove(group) forgets it.
  Histogram other({1});
  registry.add_histogram("changeover", "seconds", &other);
  CHECK(registry.histograms().size() == 1);
  registry.remove("changeover");
  CHECK(registry.histograms().empty());
  CHECK(metrics_text({&registry}).empty());
}

}  // namespace
