#!/usr/bin/env python3
"""A proxied download survives kill -9 of its proxy (issue 14; PROTOCOL.md 14.8; the lab:
tests/netns/proxy_lab.py). A real HTTP server (nginx, or python3 -m http.server) in the
origin namespace serves a file of tens of MiB behind the relay; curl in the client
namespace, behind the strict NAT, downloads it through roam-client -> proxy A, read at a
limited rate. Both proxies push checkpoints of the session to the client every 200 ms (one
--checkpoint-seed, --origin-replay-port 7002); the relay keeps a 16 MiB replay buffer per
relayed connection (--relay-replay-bytes, --relay-replay-port 7002) and takes a carrier
silent for 3 s for dead (--dead-peer 3).

Once a third of the file arrived, proxy A gets SIGKILL. The relay takes A's carrier for
dead and keeps the backend connection and its buffer (linger). The client, silent for
5 s, presents its checkpoint to proxy B (--resume-to), which rebuilds the client leg and
sends RELAY_RESUME on a new origin leg; the relay re-sends from the client's offset.

Checks: no resume before the kill; the relay lost A's carrier before the resume (the
linger path); the relay re-sends from a down offset at or beyond
what curl had read at the kill; curl exits 0 with HTTP 200 and the file is SHA-256 and
length exact; proxy B counts one resume and logs the relay's RELAY_RESUMED; the relay
counts one relay resume done.
Refusals (while the download goes on, after the resume): a kernel socket in the origin
namespace (no owner proof in its SYN) sends RELAY_RESUME for the resumed connection's new
id (refused: 5 not owner) and for its old id (refused: 4 unknown connection: a resume
works once); each gets RELAY_RESUMED status 1 with that reason, the relay counts each, and
the download is still exact.

Exit 0 passed, 1 failed, 77 skipped (not root, curl missing). About 17 s plain.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import ROAMCTL, Failure, log, run_tool  # noqa: E402
import netns_lab  # noqa: E402
import proxy_lab  # noqa: E402
from proxy_lab import HTTP_PORT, MIB, ORIGIN_LWIP, PROXIES, ProxyLab, end, scaled, wait_until  # noqa: E402

REPLAY_PORT = 7002
REPLAY_BYTES = 16 * MIB
SECONDS = 9  # the download's length at the reader's rate
# The client's silence bound: above lwIP's first retransmission timeouts (a segment lost on
# a loaded machine at the download's start silenced proxy A for over 1 s, and the client
# moved the session to B before the kill: a takeover of a live proxy, which the test is
# not about), and 2 s above the relay's dead-peer bound, so that the relay lingers first.
RESUME_AFTER_MS = 5000
# The relay's dead-peer bound: it takes proxy A's carrier for dead first, so the relayed
# connection lingers (PROTOCOL.md 14.8.3) when the RELAY_RESUME comes.
RELAY_DEAD_PEER_S = 3


# In namespace o: one RELAY_RESUME (PROTOCOL.md 14.8.4) to the relay's replay port from a
# kernel socket; prints the RELAY_RESUMED fields "status S reason R skip K" or "error ...".
PROBE = r"""
import socket, struct, sys
host, port, rid, down, up = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
try:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(b"RSRR" + struct.pack(">BQQQ", 1, rid, down, up))
    got = b""
    while len(got) < 15:
        d = s.recv(15 - len(got))
        if not d:
            break
        got += d
    if len(got) < 15 or got[:5] != b"RSRA\x01":
        print("error answer %r" % got, flush=True)
    else:
        status, reason, skip = struct.unpack(">BBQ", got[5:])
        print("status %d reason %d skip %d" % (status, reason, skip), flush=True)
except OSError as e:
    print("error %s" % e, flush=True)
"""


def main(lab):
    www = os.path.join(lab.workdir, "www")
    os.makedirs(www)
    size = scaled(40 * MIB, minimum=20 * MIB)
    want = proxy_lab.write_seeded(os.path.join(www, "big.bin"), size, 1414)
    server, ready = proxy_lab.start_http_origin(lab, www)
    seed = os.path.join(lab.workdir, "checkpoint.key")
    run_tool([ROAMCTL, "genkey", "--out", seed], "roamctl genkey")
    plab = ProxyLab(lab, HTTP_PORT)
    fetch = None
    try:
        lab.wait_log("http", ready)
        plab.start(client_args=["--resume-to", PROXIES["b"][1], "--resume-after-ms", str(RESUME_AFTER_MS)],
                   origin_args=["--relay-replay-bytes", str(REPLAY_BYTES), "--relay-replay-port", str(REPLAY_PORT),
                                "--dead-peer", str(RELAY_DEAD_PEER_S)],
                   proxy_args=["--checkpoint-seed", seed, "--checkpoint-interval-ms", "200", "--origin-replay-port",
                               str(REPLAY_PORT)])
        rate = max(256 * 1024, size // SECONDS)
        t0 = time.monotonic()
        fetch, out = proxy_lab.spawn_fetch(lab, "big.bin", rate, "reader", 1 << 20)

        def progress():
            line = out.last("progress")
            return int(line.split()[1]) if line else 0

        # 1. Kill proxy A a third of the way (checkpoints were pushed every 200 ms meanwhile).
        wait_until(lambda: progress() >= size // 3, 120, "a third of the download through proxy A",
                   lambda: fetch.poll() is not None and "the fetcher ended early: %s" % out.lines[-3:])
        if "relayed connection resumed" in lab.log_text("origin"):
            raise Failure("the client resumed the session before proxy A was killed (a silence of %d ms)" %
                          RESUME_AFTER_MS)
        lab.procs["proxy_a"].kill()
        lab.procs["proxy_a"].wait()
        plab.labels.remove("proxy_a")
        killed_at = progress()
        log("ok   - %s: proxy A killed with SIGKILL at %.1f MiB of %d MiB" % (server, killed_at / MIB, size // MIB))

        # 2. Proxy B resumes it at the relay.
        wait_until(lambda: "relayed connection resumed on connection" in lab.log_text("origin"), 60,
                   "the relay resuming the relayed connection",
                   lambda: fetch.poll() is not None and "the fetcher ended: %s" % out.lines[-3:])
        line = [x for x in lab.log_text("origin").splitlines() if "relayed connection resumed on connection" in x][0]
        new_id = int(re.search(r"on connection (\d+)", line).group(1))
        offset = int(re.search(r"re-sent from offset (\d+)", line).group(1))
        if offset < killed_at:
            # The client had more than that: the relay's count and the client's view disagree.
            raise Failure("the relay re-sent from down offset %d; the client had read %d bytes" % (offset, killed_at))
        rebuilt = re.search(r"resumed from checkpoint generation \d+ \(relayed connection (\d+),",
                            lab.log_text("proxy_b"))
        if not rebuilt:
            raise Failure("proxy B never logged the checkpoint's relayed connection")
        old_id = int(rebuilt.group(1))
        log("ok   - the relay resumed it: %s" % line.split("] ")[-1])
        text = lab.log_text("origin")
        lingered = text.find("carrier lost; the backend connection waits")
        if lingered < 0 or lingered > text.find("relayed connection resumed"):
            raise Failure("the relay did not take proxy A's carrier for lost before the resume (no linger)")
        log("ok   - the relayed connection lingered without carrier until the resume")

        # 3. Refusals while the download goes on: no owner proof, and the old name.
        probes = [("not owner", new_id, 5), ("unknown connection", old_id, 4)]
        for what, rid, reason in probes:
            answer = lab.run_in("o", [sys.executable, "-c", PROBE, ORIGIN_LWIP, str(REPLAY_PORT), str(rid), "0", "0"],
                                timeout=30).stdout.strip()
            if answer != "status 1 reason %d skip 0" % reason:
                raise Failure("RELAY_RESUME for %d (%s): got %r, want status 1 reason %d" % (rid, what, answer, reason))
            log("ok   - RELAY_RESUME without owner proof for connection %d refused: %s (%s)" % (rid, answer, what))
        progress_after_probes = progress()

        # 4. The download completes, exact.
        wait_until(lambda: fetch.poll() is not None, 120 + 4 * SECONDS, "the download's end (hang detector)")
        seconds = time.monotonic() - t0
        proxy_lab.check_download(fetch, out, size, want)
        if progress_after_probes >= size:
            raise Failure("the download ended before the refusals: they did not run beside it")
        log("ok   - curl downloaded %d MiB in %.1f s, SHA-256 and length exact across the kill of proxy A" % (
            size // MIB, seconds))

        # 5. Counters.
        relay = plab.status_json("origin")
        want_relay = {"relay_resumes_done": 1, "relay_resume_refused_not_owner": 1,
                      "relay_resume_refused_unknown_connection": 1}
        got_relay = {k: relay.get(k) for k in want_relay}
        if got_relay != want_relay:
            raise Failure("relay counters %s, want %s" % (got_relay, want_relay))
        b = plab.status_json("b")
        if b.get("resumes_done") != 1:
            raise Failure("proxy B resumes_done %s, want 1" % b.get("resumes_done"))
        if "proxy session resumed at the relay" not in lab.log_text("proxy_b"):
            raise Failure("proxy B never logged the relay's RELAY_RESUMED")
        log("ok   - counters: relay %s; proxy B resumes_done 1" % got_relay)
        plab.stop()
        log("ok   - every remaining roam process exited 0 on SIGTERM")
    except Failure as e:
        raise Failure("%s\n%s" % (e, plab.evidence()))
    finally:
        if fetch is not None:
            end(fetch)
        end(lab.procs["http"])
        proxy_lab.remove(os.path.join(www, "big.bin"))


if __name__ == "__main__":
    proxy_lab.require("curl")
    netns_lab.run("pr", main, up_args=["--origin"])
