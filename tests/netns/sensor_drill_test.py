#!/usr/bin/env python3
"""The attack drill of seed 004's Migration Sensor (issue 13): flood the front, the
sensor moves its verified clients and their live sessions to the next proxy.

The lab is the proxy topology (tests/netns/proxy_lab.py, `topology up NAME --origin`)
with the strict NAT in the client namespace (`tools/netns/nat on NAME --ns c`: one public
address, 198.18.1.1, toward every server, as a home NAT has):

  c   roam-client (198.18.11.2), -L 127.0.0.1:9000:198.18.12.2:7000, behind the NAT
  s   proxy A (198.18.12.2, control 198.18.2.1:7100) --next-proxy 198.18.3.1:7100
  s2  proxy B (198.18.13.2, control 198.18.3.1:7100)
  o   the origin relay and a python backend (proxy_lab.BACKEND) on 127.0.0.1:7070
  r   roamctl and the flood generator (tools/bench/syn_flood: spoofed sources from
      198.19.0.0/16, bounded by a count and a duration)

The drill: a download (SIZE bytes, paced by the backend over ~6 s) runs through A; a
spoofed SYN flood hits A's carrier port; A's flood detector alarms and A informs: B
whitelists the client's address (RATIFY), the client is told that new connections go to
B (transfer notification), and the live download moves to B. Asserted: A alarmed and
informed ("ok informed 1 ..."); the download finishes SHA-256 exact; a new connection of
the client, made while the flood still hits A, is served by B (B shows a session that no
move brought, A shows none); the flood's SYNs at A are dropped (whitelist_drops, and as
root first copies the kernel dropped before A read them: syn_first_dropped_kernel); spoofed
SYNs to B (carrier and channel port) from sources not ratified are dropped and counted
(whitelist_drops) and cost B no SYN cookie.

Reported (last line, JSON; run_drill() returns it, for tools/bench): drill_byte_exact,
detect_ms (flood start to A's alarm line, wall clock, polled every 20 ms), inform_ms (to
A's inform summary), drill_bytes, flood_pps, whitelist_drops_a, first_dropped_kernel_a,
whitelist_drops_b.

ROAMSTACK_TEST_SCALE scales SIZE (at least 2 MiB). Exit 0 passed, 1 failed, 77 skipped.
"""
import hashlib
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netns_lab  # noqa: E402
import proxy_lab  # noqa: E402
from netns_lab import NAT, ROAM_CLIENT, ROAM_SERVER, ROAMCTL, Failure, log, wait_until  # noqa: E402
from proxy_lab import BACKEND, CLIENT_LWIP, LPORT, MIB, ORIGIN_CONTROL, ORIGIN_LWIP, PROXIES  # noqa: E402
from proxy_lab import Lines, end, spawn_in  # noqa: E402

SYN_FLOOD = os.environ.get("SYN_FLOOD", os.path.join(netns_lab.ROOT, "build", "tools", "bench", "syn_flood"))
BACKEND_PORT = 7070
A_ADDR, A_CONTROL = PROXIES["a"][1], PROXIES["a"][2]
B_ADDR, B_CONTROL = PROXIES["b"][1], PROXIES["b"][2]
NAT_ADDRESS = "198.18.1.1"  # the client's public address (the NAT in c)
SEED = 4004
FLOOD_PPS = int(os.environ.get("DRILL_FLOOD_PPS", "3000"))
FLOOD_SECONDS = 6
DOWNLOAD_SECONDS = 6
WARMUP_WAIT = 2.5  # seconds after A starts (its detector warms up for 1 s)

# In c: one download through the forward. Prints "recv N" every 256 KiB, then
# "done N SHA256" (or "error ...").
DOWNLOADER = r"""
import hashlib, socket, sys
port, size, seed, rate = (int(a) for a in sys.argv[1:5])
s = socket.create_connection(("127.0.0.1", port), timeout=30)
s.settimeout(60)
got = 0
try:
    if s.recv(1) != b"h":
        raise OSError("no first byte from the backend")
    s.sendall(b"STREAM %d %d %d\n" % (size, seed, rate))
    h, got, mark = hashlib.sha256(), 0, 0
    while True:
        d = s.recv(65536)
        if not d:
            break
        h.update(d)
        got += len(d)
        if got - mark >= 256 * 1024:
            mark = got
            print("recv", got, flush=True)
except OSError as e:
    print("error after %d bytes: %s" % (got, e), flush=True)
    sys.exit(1)
print("done", got, h.hexdigest(), flush=True)
"""

# In c: a new connection through the forward: gets the backend's first byte, says
# "connected", holds the connection until a line on stdin.
NEW_CONNECTION = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
s.settimeout(30)
print("connected" if s.recv(1) == b"h" else "no first byte", flush=True)
s.sendall(b"IDLE\n")
sys.stdin.readline()
s.close()
"""


def expected_sha256(size, seed):
    """What the backend's STREAM sends (64 KiB randbytes at a time)."""
    rng, h, sent = random.Random(seed), hashlib.sha256(), 0
    while sent < size:
        d = rng.randbytes(min(65536, size - sent))
        h.update(d)
        sent += len(d)
    return h.hexdigest()


def status(lab, control):
    out = lab.run_in("r", [ROAMCTL, "status", "--server", control], timeout=30)
    try:
        return json.loads(out.stdout)
    except ValueError:
        raise Failure("roamctl status %s: %s %s" % (control, out.stdout.strip(), out.stderr.strip()))


def show(lab, control):
    out = lab.run_in("r", [ROAMCTL, "show", "--json", "--server", control], timeout=30)
    try:
        return json.loads(out.stdout)
    except ValueError:
        raise Failure("roamctl show %s: %s %s" % (control, out.stdout.strip(), out.stderr.strip()))


def flood(lab, dst, port, pps, seconds):
    """Starts a bounded spoofed SYN flood from r; returns the process (JSON on stdout)."""
    return subprocess.Popen([netns_lab.TOPOLOGY, "exec", lab.name, "r", SYN_FLOOD, "--dst", dst, "--port", str(port),
                             "--sources", "198.19.0.0/16", "--rate", str(pps), "--duration", str(seconds),
                             "--count", str(int(pps * seconds))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def flood_result(proc):
    text, err = proc.communicate(timeout=60)
    if proc.returncode != 0:
        raise Failure("syn_flood: exit %d: %s" % (proc.returncode, err.strip()))
    return json.loads(text.strip().splitlines()[-1])


def start_lab(lab):
    """The roam processes: origin, proxies B and A (A informs B), the client behind the NAT."""
    pool = lab.pool()
    run = subprocess.run([NAT, "on", lab.name, "--ns", "c"], capture_output=True, text=True)
    if run.returncode != 0:
        raise Failure("nat on --ns c: " + run.stderr.strip())
    link = ["--link", "tun:rtun0"]
    lab.start("origin", "o", [ROAM_SERVER] + link + ["--addr", ORIGIN_LWIP, "--control", ORIGIN_CONTROL]
              + pool.server_args("origin") + ["relay", "--backend", "127.0.0.1:%d" % BACKEND_PORT])
    lab.wait_log("origin", "interface up")
    lab.start("proxy_b", "s2", [ROAM_SERVER] + link + ["--addr", B_ADDR, "--control", B_CONTROL]
              + pool.server_args("proxy_b") + ["proxy", "--origin", ORIGIN_LWIP + ":7000"])
    # A: the detector learns for 1 s only (a drill, not a deployment), then informs B.
    lab.start("proxy_a", "s", [ROAM_SERVER] + link + ["--addr", A_ADDR, "--control", A_CONTROL,
                                                      "--next-proxy", B_CONTROL, "--flood-detector-warmup", "1",
                                                      "--inform-hold", "60"]
              + pool.server_args("proxy_a") + ["proxy", "--origin", ORIGIN_LWIP + ":7000"])
    for name in ("proxy_a", "proxy_b"):
        lab.wait_log(name, "control channel to %s ('%s') established" % (ORIGIN_LWIP, ORIGIN_LWIP))
    a_started = time.monotonic()
    lab.start("client", "c", [ROAM_CLIENT] + link + ["--addr", CLIENT_LWIP, "-L",
                                                     "127.0.0.1:%d:%s:7000" % (LPORT, A_ADDR)])
    lab.wait_log("client", "interface up")
    return a_started


def first_time(lab, label, needle, t0, seconds):
    """Polls the log every 20 ms; returns ms from t0 until `needle` shows (a hang bound)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if needle in lab.log_text(label):
            return (time.monotonic() - t0) * 1000
        time.sleep(0.02)
    raise Failure("%s never logged %r within %g s:\n%s" % (label, needle, seconds, lab.log_text(label)[-3000:]))


def run_drill(lab, size=None):
    """Runs the drill in `lab` (made with up_args=["--origin"]); returns the report."""
    if not os.path.exists(SYN_FLOOD):
        raise Failure("no syn_flood binary at %s (build tools/bench)" % SYN_FLOOD)
    size = size or proxy_lab.scaled(16 * MIB, minimum=2 * MIB)
    began = time.monotonic()
    want = expected_sha256(size, SEED)
    lab.start("backend", "o", [sys.executable, "-u", "-c", BACKEND, str(BACKEND_PORT)])
    lab.wait_log("backend", "listening")
    procs = []
    try:
        a_started = start_lab(lab)
        download = spawn_in(lab, "c", [sys.executable, "-u", "-c", DOWNLOADER, str(LPORT), str(size), str(SEED),
                                       str(size // DOWNLOAD_SECONDS)], stdin=False)
        procs.append(download)
        got = Lines(download)
        wait_until(lambda: any(line.startswith("recv") for line in got.lines), 30, "the download under way",
                   lambda: download.poll() is not None and "the download ended: %s" % got.lines[-3:])
        # The client is verified at A: its control channel registered the download.
        wait_until(lambda: status(lab, A_CONTROL).get("registrations", 0) >= 1, 30,
                   "the client's registration at proxy A")
        log("ok   - download of %d bytes under way through proxy A; the client's channel is registered" % size)

        # A's detector learns the normal rate for its first second (--flood-detector-warmup 1): a
        # flood that began earlier would be learned as normal.
        time.sleep(max(0.0, a_started + WARMUP_WAIT - time.monotonic()))
        t0 = time.monotonic()
        flood_a = flood(lab, A_ADDR, 7000, FLOOD_PPS, FLOOD_SECONDS)
        procs.append(flood_a)
        detect_ms = first_time(lab, "proxy_a", "on for every listener", t0, 20)  # the detector's alarm line
        inform_ms = first_time(lab, "proxy_a", " informed ", t0, 30)
        summary = [line for line in lab.log_text("proxy_a").splitlines() if " informed " in line][-1]
        if "ok informed 1 client address" not in summary or "moved 1 of 1 sessions" not in summary:
            raise Failure("proxy A's inform: %s" % summary)
        log("ok   - A's detector alarmed %.0f ms after the flood began; informed at %.0f ms: %s" % (
            detect_ms, inform_ms, summary.split("] ", 1)[-1]))
        lab.wait_log("client", "transfers its clients to %s" % B_ADDR, 20)
        lab.wait_log("client", "new connections go to %s" % B_ADDR, 20)

        # While the flood still hits A: a new connection of the client goes to B.
        if flood_a.poll() is not None:
            raise Failure("the flood on A ended before the new connection (raise FLOOD_SECONDS)")
        new = spawn_in(lab, "c", [sys.executable, "-u", "-c", NEW_CONNECTION, str(LPORT)])
        procs.append(new)
        new_lines = Lines(new)
        wait_until(lambda: "connected" in new_lines.lines, 30, "the new connection's first byte",
                   lambda: new.poll() is not None and "it ended: %s" % new_lines.lines[-3:])
        at_b = show(lab, B_CONTROL)
        accepted_at_b = [s for s in at_b.get("sessions", []) if s.get("last_move") is None]
        sessions_a = status(lab, A_CONTROL).get("sessions", -1)
        if not accepted_at_b or sessions_a != 0:
            raise Failure("the new connection: B has %d session(s) accepted there, A has %d session(s)" % (
                len(accepted_at_b), sessions_a))
        new.stdin.write("done\n")
        new.stdin.flush()
        log("ok   - a new connection made during the flood is served by B (A holds no session)")

        wait_until(lambda: any(line.startswith(("done", "error")) for line in got.lines), 120,
                   "the download's end (hang detector)")
        done = next((line for line in got.lines if line.startswith("done")), None)
        words = done.split() if done else []
        exact = len(words) == 3 and int(words[1]) == size and words[2] == want
        if not exact:
            raise Failure("the download: %s (want done %d %s)" % (done or got.lines[-3:], size, want))
        log("ok   - the moved download finished SHA-256 exact (%d bytes)" % size)

        flood_a_result = flood_result(flood_a)
        status_a = status(lab, A_CONTROL)
        drops_a = status_a.get("whitelist_drops", 0)
        # While the flood keeps A's link busy its first copies are dropped in the kernel
        # (tun/tun_syn_check.hpp), before the whitelist sees them: those count too.
        kernel_a = status_a.get("syn_first_dropped_kernel", 0)
        if drops_a + kernel_a < 1:
            raise Failure("A dropped none of the flood after informing (whitelist_drops 0, syn_first_dropped_kernel 0)")
        log("ok   - the flood (%d SYNs, %.0f/s) kept hitting A: %d dropped there as not whitelisted, %d first copies "
            "in the kernel" % (flood_a_result["sent"], flood_a_result["pps"], drops_a, kernel_a))

        # Spoofed SYNs to B, carrier port and channel port, from sources nobody ratified.
        before = status(lab, B_CONTROL)
        for port in (7000, 7001):
            flood_result(flood(lab, B_ADDR, port, 500, 0.5))
        after = status(lab, B_CONTROL)
        drops_b = after.get("whitelist_drops", 0) - before.get("whitelist_drops", 0)
        cookies_b = after.get("syn_cookies_sent", 0) - before.get("syn_cookies_sent", 0)
        if drops_b < 2 or cookies_b != 0 or after.get("whitelist_active") != 1:
            raise Failure("spoofed SYNs to B: %d dropped as not whitelisted, %d cookies sent, whitelist_active %s" % (
                drops_b, cookies_b, after.get("whitelist_active")))
        log("ok   - B dropped %d spoofed SYNs (carrier and channel port) from sources not ratified, no cookie sent"
            % drops_b)

        lab.stop_cleanly(["client", "proxy_a", "proxy_b", "origin"])
        log("ok   - the roam processes exited 0 on SIGTERM (the drill took %.1f s)" % (time.monotonic() - began))
        return {"drill_byte_exact": True, "detect_ms": round(detect_ms, 1), "inform_ms": round(inform_ms, 1),
                "drill_bytes": size, "flood_pps": flood_a_result["pps"], "whitelist_drops_a": drops_a, "first_dropped_kernel_a": kernel_a,
                "whitelist_drops_b": drops_b}
    except Failure as e:
        evidence = []
        for label in ("client", "proxy_a", "proxy_b", "origin"):
            if label in lab.procs:
                evidence.append("== %s (tail)\n%s" % (label, "\n".join(lab.log_text(label).splitlines()[-20:])))
        raise Failure("%s\n%s" % (e, "\n".join("#   " + line for line in "\n".join(evidence).splitlines())))
    finally:
        for proc in procs:
            end(proc, grace=2)
        end(lab.procs["backend"])


def main(lab):
    report = run_drill(lab)
    log(json.dumps(report))


if __name__ == "__main__":
    proxy_lab.require()
    netns_lab.run("sd", main, up_args=["--origin"])
