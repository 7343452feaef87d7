#!/usr/bin/env python3
"""Replayed, stale, cross-client and wrong-connection checkpoints refused by live servers (issue 14).

Topology: roam-servers A (198.18.12.2) and B (198.18.13.2), files mode, one checkpoint
seed, A pushing every 100 ms; the client is tests/tools/resume_probe on 198.18.11.2
(UDP links on loopback). Why a C++ tool and not a roam-client option: the RESUMEs must
carry chosen bytes (an older generation, another connection's id, another client's
checkpoint) on authenticated Noise channels from a userspace address, under two client
keys at once; the tool reuses stack/control's channel and message code (so RESUMED is
decoded by the same decoder roam-client uses) and roam-client keeps no test-only switch.

The probe downloads a file from A with key Y and does not read (the session stays in
its sending phase), keeps three checkpoint generations g1 < g2 < g3, then runs, one
answer at a time:

  1 X presents g3 at B            -> refused wrong_client (7)
  2 Y presents g3 at B, other id  -> refused wrong_connection (8)
  3 Y presents g2 at B            -> resumed (0): refusals 1-2 of the newer g3 did not
                                     advance B's ledger
  4 Y presents g2 at B again      -> refused replayed (10)
  5 Y presents g1 at B            -> refused stale (11)
  6 Y presents g3 at B            -> refused 33 (live here): g3 passed the ledger, so
                                     refusals 4-5 left it at g2; the connection B resumed
                                     in 3 is parked (its client never came), which is live
                                     too (it used to be 34 through a refused import)
  7 X presents g3 at A            -> refused wrong_client, where the connection is open
  8 Y presents g3 at A, other id  -> refused wrong_connection
  9 Y presents g3 at A            -> refused 33 (live here)

Asserted: each answer's status, reason, id and generation; each server's refusals by
reason (roamctl status) and B's Prometheus metrics; B holds exactly the one resumed
session and A only the download, and neither refused an import (no refusal created or
tried to create a connection); A's download, then read to its end (the probe reads only
on SIGUSR1, after the servers were looked at), is the file byte-exact (the refusals left
the open connection alone).
"""
import hashlib
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

RESUME_PROBE = os.environ.get("RESUME_PROBE") or os.path.join(
    os.path.dirname(harness.ROAM_SERVER), "..", "tests", "resume_probe")
# Larger than the probe's receive window (lwIP TCP_WND, 4 MiB) plus A's send buffer (at
# most 4 MiB), so A stays in its sending phase (and keeps checkpointing) while the probe
# does not read.
SIZE = 16 * 1024 * 1024
NAME = "refusals.bin"
ADDR = {"A": harness.SERVER_ADDR, "B": harness.SERVER_B_ADDR}
NET = {"A": harness.SERVER_NET, "B": harness.SERVER_B_NET}

# (step, --resume, checkpoint index, status, reason, server)
STEPS = [
    ("x@next:3", 3, 1, 7, "B"),
    ("y@next:3:wrong-id", 3, 1, 8, "B"),
    ("y@next:2", 2, 0, 0, "B"),
    ("y@next:2", 2, 1, 10, "B"),
    ("y@next:1", 1, 1, 11, "B"),
    ("y@next:3", 3, 1, 33, "B"),
    ("x@server:3", 3, 1, 7, "A"),
    ("y@server:3:wrong-id", 3, 1, 8, "A"),
    ("y@server:3", 3, 1, 33, "A"),
]
EXPECTED = {
    "A": {"resume_refused_wrong_client": 1, "resume_refused_wrong_connection": 1, "resume_refused_live": 1},
    "B": {"resume_refused_wrong_client": 1, "resume_refused_wrong_connection": 1, "resume_refused_replayed": 1,
          "resume_refused_stale": 1, "resume_refused_live": 1},
}


def status(controls, name):
    result = harness.roamctl("status", "--server", controls[name])
    check(result.returncode == 0, "roamctl status %s: %s" % (name, result.stderr))
    import json
    return json.loads(result.stdout)


def main():
    if not os.path.exists(RESUME_PROBE):
        raise TestFailure("resume_probe not built at %s" % RESUME_PROBE)
    directory = tempfile.mkdtemp(prefix="roam-it-refusals-")
    procs = []
    try:
        data = random.Random(0x14).randbytes(SIZE)
        with open(os.path.join(directory, NAME), "wb") as f:
            f.write(data)
        seed = os.path.join(directory, "checkpoint.seed")
        subprocess.run([harness.ROAMCTL, "genkey", "--out", seed], check=True, capture_output=True)
        udp = {n: harness.free_udp_port() for n in ("A", "B", "probe")}
        controls = {n: "127.0.0.1:%d" % harness.free_tcp_port() for n in ("A", "B")}
        metrics = "127.0.0.1:%d" % harness.free_tcp_port()
        servers = {}
        for name in ("A", "B"):
            argv = [harness.ROAM_SERVER, "--link", "udp:127.0.0.1:%d" % udp[name], "--addr", ADDR[name],
                    "--route", "%s=127.0.0.1:%d" % (harness.CLIENT_NET, udp["probe"]),
                    "--control", controls[name]] + harness.lab_pool().server_args(name) + \
                ["--checkpoint-seed", seed, "--checkpoint-interval-ms", "100"] + \
                (["--metrics", metrics] if name == "B" else []) + ["files", "--root", directory]
            servers[name] = harness.RoamProcess("server", argv, name="server-" + name)
            procs.append(servers[name])
            check(servers[name].wait_for_log("[app] serving "),
                  "roam-server %s did not start:\n%s" % (name, servers[name].tail()))
        argv = [RESUME_PROBE, "--link", "udp:127.0.0.1:%d" % udp["probe"], "--addr", harness.CLIENT_ADDR,
                "--server", ADDR["A"], "--next", ADDR["B"], "--get", NAME, "--checkpoints", "3", "--read-on-signal"]
        for name in ("A", "B"):
            argv += ["--route", "%s=127.0.0.1:%d" % (NET[name], udp[name])]
        for step in STEPS:
            argv += ["--resume", step[0]]
        probe = harness.RoamProcess("probe", argv)
        procs.append(probe)
        check(probe.wait_for_log("[probe] steps done", timeout=harness.IO_TIMEOUT),
              "the probe did not finish its steps:\n" + probe.tail(40))
        text = probe.stderr_text()
        generations = [int(g) for g in re.findall(r"\[probe\] checkpoint \d+ (\d+)", text)]
        ident = int(re.search(r"\[probe\] download (\d+) open", text).group(1))
        check(len(generations) == 3 and generations == sorted(set(generations)),
              "checkpoint generations %s" % generations)
        log("connection %d, checkpoint generations %s" % (ident, generations))

        # Counted while nothing else happens: no refusal created a connection.
        st = {n: status(controls, n) for n in ("A", "B")}
        for i, (spec, index, want_status, want_reason, server) in enumerate(STEPS, 1):
            m = re.search(r"\[probe\] step %d resumed (\d+) (\d+) (\d+) (\d+)" % i, text)
            check(m is not None, "step %d (%s at %s): no RESUMED\n%s" % (i, spec, server, probe.tail(40)))
            got = tuple(int(v) for v in m.groups())
            want_id = ident ^ 0x1000 if spec.endswith("wrong-id") else ident
            want = (want_id, generations[index - 1], want_status, want_reason)
            check(got == want, "step %d (%s at %s): RESUMED %s, expected %s" % (i, spec, server, got, want))
            log("ok   - step %d %-20s at %s: status %d reason %d" % (i, spec, server, want_status, want_reason))
        for name in ("A", "B"):
            refusals = {k: v for k, v in st[name].items() if k.startswith("resume_refused_") and v}
            check(refusals == EXPECTED[name], "%s's refusals %s, expected %s" % (name, refusals, EXPECTED[name]))
            check(st[name]["resumes"] == sum(1 for s in STEPS if s[4] == name),
                  "%s counted %d resumes" % (name, st[name]["resumes"]))
        check(st["B"]["resumes_done"] == 1 and st["B"]["sessions"] == 1,
              "B: resumes_done %d, sessions %d (expected 1 and 1)" % (st["B"]["resumes_done"], st["B"]["sessions"]))
        for name in ("A", "B"):
            check(st[name].get("imports_refused", 0) == 0, "%s refused %d imports" % (name, st[name]["imports_refused"]))
        check(st["A"]["resumes_done"] == 0 and st["A"]["sessions"] == 1,
              "A: resumes_done %d, sessions %d (expected 0 and 1)" % (st["A"]["resumes_done"], st["A"]["sessions"]))
        for reason, count in (("replayed", 1), ("stale", 1), ("wrong_client", 1), ("wrong_connection", 1)):
            name = "roamstack_checkpoint_resume_refused_" + reason
            value = harness.metric_value(metrics, name)
            check(value == count, "B's metric %s is %s, expected %d" % (name, value, count))
        log("ok   - refusals counted by reason (A %s; B %s), B holds 1 session, A 1" % (
            EXPECTED["A"], EXPECTED["B"]))

        probe.send_signal(signal.SIGUSR1)  # now read the download to its end
        check(probe.wait_for_log("[probe] download eof", timeout=harness.IO_TIMEOUT),
              "the download did not end:\n" + probe.tail(20))
        m = re.search(r"\[probe\] download eof (\d+) ([0-9a-f]+)", probe.stderr_text())
        check(int(m.group(1)) == SIZE and m.group(2) == hashlib.sha256(data).hexdigest(),
              "the download after the refusals: %s bytes, sha256 %s (expected %d, %s)" % (
                  m.group(1), m.group(2), SIZE, hashlib.sha256(data).hexdigest()))
        log("ok   - A's download after the refusals is the file, byte-exact (%d bytes)" % SIZE)
        # It exits by itself after the download (a SIGTERM now would cut its own shutdown short).
        harness.wait_until("the probe's exit", lambda: not probe.alive(), timeout=harness.STOP_TIMEOUT)
        probe.stop()
        for name in ("A", "B"):
            servers[name].stop()
    finally:
        for proc in procs:
            if proc.alive():
                proc.stop(check_exit=False)
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
