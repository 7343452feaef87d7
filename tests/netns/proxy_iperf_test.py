#!/usr/bin/env python3
"""iperf3 through the proxy topology during moves (issue 12; the lab:
tests/netns/proxy_lab.py): `iperf3 -s` (Debian's, unmodified) on 127.0.0.1:5201 in the
origin namespace, `iperf3 -c 127.0.0.1 -p 9000` in the client namespace behind the strict
NAT, through roam-client's forward -> proxy A. Both of iperf3's connections (control and
data) go through the proxy. Two runs of T = max(5, 8 x ROAMSTACK_TEST_SCALE) seconds,
client -> server and then reversed (-R), each while the proxy moves every 2 s (A -> B -> A
...; each move "ok moved N of N", N >= 1). Each run must complete (iperf3 exit 0, a JSON
report without "error", at least 2 moves while it ran) and report bytes received > 0;
the throughput is printed.

Exit 0 passed, 1 failed, 77 skipped (not root, iperf3 missing, or roam-server without
proxy mode).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import Failure, log  # noqa: E402
import netns_lab  # noqa: E402
import proxy_lab  # noqa: E402
from proxy_lab import LPORT, Mover, ProxyLab, end, spawn_in  # noqa: E402

IPERF_PORT = 5201


def one_run(lab, plab, seconds, reverse):
    what = "reverse (server -> client)" if reverse else "client -> server"
    t0 = time.monotonic()
    client = spawn_in(lab, "c", ["iperf3", "-c", "127.0.0.1", "-p", str(LPORT), "-t", str(seconds), "-J",
                                 "--connect-timeout", "30000"] + (["-R"] if reverse else []), stdin=False)
    mover = Mover(plab, 2.0, active=lambda: client.poll() is None)
    mover.start()
    try:
        text, _ = client.communicate(timeout=seconds + 300)
    finally:
        moves = mover.stop()
        end(client)
    took = time.monotonic() - t0
    during = [m for m in moves if m[0] - t0 < took]
    try:
        report = json.loads(text)
    except ValueError:
        raise Failure("iperf3 %s exited %s without a JSON report: %s" % (what, client.returncode, text[-800:]))
    if client.returncode != 0 or "error" in report:
        raise Failure("iperf3 %s exited %s: %s" % (what, client.returncode, report.get("error")))
    received = report["end"]["sum_received"]
    if received["bytes"] <= 0:
        raise Failure("iperf3 %s received no bytes: %s" % (what, received))
    if proxy_lab.mode() != "relay" and len(during) < 2:
        raise Failure("only %d move(s) during the %s run (%.1f s)" % (len(during), what, took))
    log("ok   - iperf3 %s: %.1f Mbit/s received (%d MiB in %.1f s, %d retransmits) across %d proxy moves" % (
        what, received["bits_per_second"] / 1e6, received["bytes"] >> 20, received["seconds"],
        report["end"].get("sum_sent", {}).get("retransmits", 0), len(during)))


def main(lab):
    seconds = max(5, int(round(8 * proxy_lab.scale())))
    lab.start("iperf3", "o", ["iperf3", "-s", "--forceflush", "-B", "127.0.0.1", "-p", str(IPERF_PORT)])
    plab = ProxyLab(lab, IPERF_PORT)
    try:
        lab.wait_log("iperf3", "Server listening")
        plab.start()
        one_run(lab, plab, seconds, reverse=False)
        one_run(lab, plab, seconds, reverse=True)
        plab.stop()
        log("ok   - every roam process exited 0 on SIGTERM")
    except Failure as e:
        raise Failure("%s\n%s" % (e, plab.evidence()))
    finally:
        end(lab.procs["iperf3"])


if __name__ == "__main__":
    proxy_lab.require("iperf3")
    netns_lab.run("pi", main, up_args=["--origin"])
