#!/usr/bin/env python3
"""roam-server --metrics: the Prometheus endpoint (harness.Pair, mode echo).

1. curl fetches /metrics (server, and the client's own --metrics): every line parses (# HELP / # TYPE lines, then samples
   `name{labels} value` whose name had a TYPE), names are roamstack_<group>_<name>, and
   the registry's gauges (sessions, channels) are typed gauge, the rest counter.
2. A known counter moves: an echo round trip through the client raises
   roamstack_node_rx_packets, and the open session shows in roamstack_migrate_sessions.
3. Bad requests: binary garbage gets HTTP 400, a POST 400, another path 404; they are
   counted (roamstack_metrics_bad_requests, _not_found) and the server keeps serving.
4. The connection cap: with 16 idle connections open, a 17th is closed at once, counted
   (refused_over_cap); once they close, curl is answered again.
5. The changeover histogram (harness.TwoServers, each node with its --metrics): before a
   move roamstack_changeover_seconds counts nothing; after one session moved A -> B and
   echoed there, B's histogram (import to client heard) and the client's (ACM to heard)
   count 1: cumulative buckets, le="+Inf" equal to _count, a positive _sum; the client's
   outcomes changeover_heard 1, and A's counts nothing.
Nothing is timed; every wait is a poll with harness bounds.
"""
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"]*")*\})? '
                    r'(?P<value>-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|NaN|[+-]Inf)$')
GAUGES = {"roamstack_migrate_sessions", "roamstack_migrate_sessions_movable", "roamstack_migrate_sessions_unmovable",
          "roamstack_migrate_parked", "roamstack_channel_channels", "roamstack_metrics_connections",
          "roamstack_app_connections"}
# The defense group's state readings (stack/defense: cookie mode, per-listener cookie state,
# the flood detector's rates and alarm, whitelist mode and its size, whether the kernel runs
# the first-SYN check), and the roaming state.
GAUGE_PATTERN = re.compile(r"roamstack_defense_(syn_cookie_mode|syn_cookies_active_port_\d+|detector_(?!alarms$)\w+"
                           r"|whitelist_active|whitelist_size|syn_check_kernel_active)"
                           # proactive roaming (apps/roam_pool_service, apps/roam_follow): state readings
                           r"|roamstack_roam_roam_(epoch|active|accepting|member|granted_until)"
                           # client-held checkpoints (apps/checkpoint_holder): how many it holds
                           r"|roamstack_checkpoint_checkpoints_held"
                           # the last move's readings (stack/migrate/migration_service)
                           r"|roamstack_migrate_last_(move|import)_\w+"
                           # pre-copied bytes a target holds for moves not yet frozen (stack/migrate/precopy)
                           r"|roamstack_precopy_precopy_bytes_held"
                           # control connections kept open to move targets now (stack/migrate/control_pool)
                           r"|roamstack_control_control_connections_cached")
HISTOGRAMS = {"roamstack_changeover_seconds"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def curl(url, *extra):
    result = subprocess.run(["curl", "-sS", "--max-time", "20"] + list(extra) + [url], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=harness.IO_TIMEOUT)
    return result


def fetch(address):
    result = subprocess.run(["curl", "-sS", "--max-time", "20", "-i", "http://%s/metrics" % address],
                            stdin=subprocess.DEVNULL, capture_output=True, timeout=harness.IO_TIMEOUT)
    check(result.returncode == 0, "curl: exit %d, %s" % (result.returncode, result.stderr))
    head, _, body = result.stdout.decode().partition("\r\n\r\n")
    check(head.startswith("HTTP/1.0 200 OK"), "metrics answered %r" % head[:80])
    check("Content-Type: text/plain; version=0.0.4" in head, "metrics content type: %r" % head)
    return parse(body)


def typed_as(name, types):
    """The name whose TYPE line covers sample `name`: itself, or a histogram's base name."""
    if name in types:
        return name
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
            return name[:-len(suffix)]
    return None


def parse(body):
    """{name: value}, and for samples with labels {name{labels}: value}; checks every line."""
    types = {}
    values = {}
    check(body.endswith("\n"), "the metrics text does not end with a newline")
    for number, line in enumerate(body.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            check(len(line.split(" ", 3)) == 4, "line %d: HELP without text: %r" % (number, line))
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            check(len(parts) == 4 and parts[3] in ("counter", "gauge", "histogram"),
                  "line %d: bad TYPE %r" % (number, line))
            check(parts[2] not in types, "line %d: %s typed twice" % (number, parts[2]))
            types[parts[2]] = parts[3]
            continue
        match = SAMPLE.match(line)
        check(match is not None, "line %d does not parse as a sample: %r" % (number, line))
        name = match.group(1)
        base = typed_as(name, types)
        check(base is not None, "line %d: %s has no TYPE line before it" % (number, name))
        check(types[base] != "histogram" or name != base, "line %d: histogram %s without a suffix" % (number, name))
        check((match.group(2) is not None) == name.endswith("_bucket"),
              "line %d: labels only on a histogram's buckets: %r" % (number, line))
        check(name.startswith("roamstack_"), "line %d: %s is not roamstack_<group>_<name>" % (number, name))
        key = name + (match.group(2) or "")
        check(key not in values, "line %d: %s given twice" % (number, key))
        values[key] = float(match.group("value"))
    for name, kind in types.items():
        want = "histogram" if name in HISTOGRAMS else \
            "gauge" if name in GAUGES or GAUGE_PATTERN.fullmatch(name) else "counter"
        check(kind == want, "%s is typed %s, expected %s" % (name, kind, want))
    check(len(values) > 40, "only %d samples" % len(values))
    return values


def raw_request(address, payload):
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=harness.IO_TIMEOUT) as sock:
        sock.sendall(payload)
        got = b""
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                return got
            got += chunk


def wait_for(address, name, predicate, what):
    deadline = time.monotonic() + harness.READY_TIMEOUT
    while True:
        values = fetch(address)
        if predicate(values.get(name)):
            return values
        if time.monotonic() > deadline:
            raise TestFailure("%s: %s is %r" % (what, name, values.get(name)))
        time.sleep(0.05)


def histogram(values, name):
    """(buckets [(le, cumulative count)], sum, count) of histogram `name`; checks its shape."""
    buckets = []
    for key, value in values.items():
        found = re.fullmatch(re.escape(name) + r'_bucket\{le="([^"]+)"\}', key)
        if found:
            buckets.append((float(found.group(1)), value))
    buckets.sort()
    check(len(buckets) >= 2 and buckets[-1][0] == float("inf"), "%s: buckets %r" % (name, buckets))
    counts = [count for _, count in buckets]
    check(counts == sorted(counts), "%s: buckets not cumulative: %r" % (name, buckets))
    total = values.get(name + "_count")
    check(total is not None and name + "_sum" in values, "%s: no _sum or _count" % name)
    check(counts[-1] == total, "%s: le=+Inf %r, _count %r" % (name, counts[-1], total))
    return buckets, values[name + "_sum"], total


def changeover_histogram():
    """Part 5: a move counted by the new server's and the client's changeover histograms."""
    metrics = {name: "127.0.0.1:%d" % harness.free_tcp_port() for name in ("A", "B", "client")}

    def with_metrics(name, argv):
        return argv[:1] + ["--metrics", metrics[name]] + argv[1:]

    with harness.TwoServers(mode="echo", argv_hook=with_metrics) as two:
        for name in metrics:
            _, _, count = histogram(fetch(metrics[name]), "roamstack_changeover_seconds")
            check(count == 0, "%s counts a changeover before any move: %r" % (name, count))
        sock = two.connect()
        harness.echo_round_trip(sock, what="before the move")
        two.migrate("A", "B", expect_moved=1)
        harness.echo_round_trip(sock, what="after the move")
        server = wait_for(metrics["B"], "roamstack_changeover_seconds_count", lambda v: v == 1, "B's changeover")
        _, seconds, _ = histogram(server, "roamstack_changeover_seconds")
        check(seconds > 0, "B's changeover sum %r" % seconds)
        client = wait_for(metrics["client"], "roamstack_changeover_seconds_count", lambda v: v == 1,
                          "the client's changeover")
        buckets, client_seconds, _ = histogram(client, "roamstack_changeover_seconds")
        check(client_seconds > 0, "the client's changeover sum %r" % client_seconds)
        check(client["roamstack_changeover_changeover_heard"] == 1, "changeover_heard %r" %
              client["roamstack_changeover_changeover_heard"])
        check(client["roamstack_handover_handovers_answered"] <= client["roamstack_handover_handovers_started"],
              "more handovers answered than started")
        _, _, old_count = histogram(fetch(metrics["A"]), "roamstack_changeover_seconds")
        check(old_count == 0, "A (the old server) counts a changeover: %r" % old_count)
        log("metrics: one move counted: B %.4f s, client %.4f s (first bucket holding it: le=%s)" % (
            seconds, client_seconds, next(le for le, count in buckets if count >= 1)))
        sock.close()
        two.stop_all()


def main():
    address = "127.0.0.1:%d" % harness.free_tcp_port()
    client_address = "127.0.0.1:%d" % harness.free_tcp_port()
    with harness.Pair(mode="echo", server_extra=["--metrics", address],
                      client_extra=["--metrics", client_address]) as pair:
        before = fetch(address)
        client_before = fetch(client_address)
        check(before["roamstack_migrate_sessions"] == 0, "sessions before: %r" % before["roamstack_migrate_sessions"])
        sock = pair.connect()
        sock.sendall(b"count me\n" * 50)
        got = b""
        while len(got) < 450:
            chunk = sock.recv(4096)
            check(chunk, "echo ended early")
            got += chunk
        after = fetch(address)
        check(after["roamstack_node_rx_packets"] > before["roamstack_node_rx_packets"],
              "rx_packets did not grow: %r -> %r" % (before["roamstack_node_rx_packets"],
                                                     after["roamstack_node_rx_packets"]))
        check(after["roamstack_migrate_sessions"] == 1, "sessions with one open: %r" % after["roamstack_migrate_sessions"])
        log("metrics: %d samples parse; rx_packets %d -> %d, sessions 1" % (
            len(after), before["roamstack_node_rx_packets"], after["roamstack_node_rx_packets"]))
        client_after = fetch(client_address)
        check(client_after["roamstack_node_tx_packets"] > client_before["roamstack_node_tx_packets"],
              "the client's tx_packets did not grow")
        check(client_after["roamstack_app_connections"] == 1, "client connections: %r" %
              client_after["roamstack_app_connections"])
        check(client_after["roamstack_follower_channels_established"] >= 1, "the client counts no channel")
        log("metrics: the client's %d samples parse; tx_packets %d -> %d, 1 connection, channel established" % (
            len(client_after), client_before["roamstack_node_tx_packets"], client_after["roamstack_node_tx_packets"]))

        garbage = raw_request(address, b"\x16\x03\x01\x02\x00garbage\r\n\r\n")
        check(garbage.startswith(b"HTTP/1.0 400 "), "garbage was answered %r" % garbage[:60])
        posted = curl("http://%s/metrics" % address, "-X", "POST", "-o", "/dev/null", "-w", "%{http_code}")
        check(posted.stdout == "400", "POST answered %r" % posted.stdout)
        other = curl("http://%s/" % address, "-o", "/dev/null", "-w", "%{http_code}")
        check(other.stdout == "404", "GET / answered %r" % other.stdout)
        values = fetch(address)
        check(values["roamstack_metrics_bad_requests"] == 2, "bad_requests %r" % values["roamstack_metrics_bad_requests"])
        check(values["roamstack_metrics_not_found"] == 1, "not_found %r" % values["roamstack_metrics_not_found"])
        log("metrics: garbage and POST got 400, / got 404, counted; still serving")

        host, port = address.rsplit(":", 1)
        idle = [socket.create_connection((host, int(port)), timeout=harness.IO_TIMEOUT) for _ in range(16)]
        try:
            extra = socket.create_connection((host, int(port)), timeout=harness.IO_TIMEOUT)
            try:
                closed = extra.recv(100)
            except ConnectionResetError:
                closed = b""
            check(closed == b"", "a 17th connection got %r instead of being closed" % closed)
            extra.close()
        finally:
            for s in idle:
                s.close()
        values = wait_for(address, "roamstack_metrics_connections", lambda v: v == 1, "idle connections gone")
        check(values["roamstack_metrics_refused_over_cap"] >= 1, "refused_over_cap %r" %
              values["roamstack_metrics_refused_over_cap"])
        log("metrics: 16 idle connections held the cap; the 17th was closed and counted")
        check(pair.server.alive(), "the server died")
        sock.close()
        pair.stop_all()
    changeover_histogram()
    log("PASS")


if __name__ == "__main__":
    harness.run(main)
