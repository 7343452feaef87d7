#!/usr/bin/env python3
"""A proxy killed with SIGKILL, no move (issue 12; the lab: tests/netns/proxy_lab.py): the
applications behind roam-client get a reset (ECONNRESET or another error, never a clean
EOF) within the dead-peer bound (120 s here, generous against the client's --dead-peer
of 6 s; PROXY_DEAD_BOUND=SECONDS changes it). The client runs with --dead-peer 6 rather
than the default 30 s, which would only make the test wait longer: the default is pinned
by tests/apps/link_cli_test.cpp and the rule is the same for any bound.

The origin's backend is a small python server (proxy_lab.BACKEND) on 127.0.0.1:7070 in
namespace o. Two applications in the client namespace, behind the strict NAT, each on
its own connection through the forward -> proxy A:
  reader  reads the backend's first byte, then only waits to read (the case that hung
          over 240 s before keepalive)
  writer  reads the first byte, then writes 16 KiB every 20 ms into the backend's sink
Once both are established and the writer has sent 1 MiB, proxy A gets SIGKILL (its TUN
stays, so the client hears nothing: a silent dead peer). The measured times from the
kill to each application's error are printed, with what the client logged about it and
when the origin's backend saw its connections end (information only).

Exit 0 passed, 1 failed, 77 skipped (not root, or roam-server without proxy mode).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import Failure, log  # noqa: E402
import netns_lab  # noqa: E402
import proxy_lab  # noqa: E402
from proxy_lab import BACKEND, LPORT, Lines, ProxyLab, end, spawn_in, wait_until  # noqa: E402

BACKEND_PORT = 7070
BOUND = float(os.environ.get("PROXY_DEAD_BOUND", "120"))
DEAD_PEER = 6  # roam-client --dead-peer: seconds of silence before a peer is dead

# In namespace c: the reader and the writer (threads); "ready" when both are established and
# 1 MiB was written; after "killed" on stdin, prints "<who> reset|error|eof after S s" for
# each, or "<who> alive after S s" at BOUND + 10 s.
APPS = r"""
import socket, sys, threading, time
port, bound = int(sys.argv[1]), float(sys.argv[2])
t_kill, results, lock = [None], {}, threading.Lock()
written = [0]

def finish(who, what):
    with lock:
        if who not in results:
            results[who] = what
            dt = time.monotonic() - t_kill[0] if t_kill[0] else -1
            print("%s %s after %.3f s" % (who, what, dt), flush=True)

def connect(cmd):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    if s.recv(1) != b"h":
        raise SystemExit("no first byte from the backend")
    s.sendall(cmd)
    s.settimeout(None)
    return s

r = connect(b"IDLE\n")
w = connect(b"SINK\n")

def reader():
    try:
        d = r.recv(65536)
        finish("reader", "eof" if not d else "data %r" % d[:20])
    except ConnectionResetError:
        finish("reader", "reset")
    except OSError as e:
        finish("reader", "error %s" % e.__class__.__name__)

def writer():
    chunk = b"w" * 16384
    try:
        while True:
            w.sendall(chunk)
            written[0] += len(chunk)
            time.sleep(0.02)
    except (ConnectionResetError, BrokenPipeError):
        finish("writer", "reset")
    except OSError as e:
        finish("writer", "error %s" % e.__class__.__name__)

threading.Thread(target=reader, daemon=True).start()
threading.Thread(target=writer, daemon=True).start()
while written[0] < (1 << 20):
    time.sleep(0.05)
print("ready", flush=True)
sys.stdin.readline()
t_kill[0] = time.monotonic()
deadline = t_kill[0] + bound + 10
while len(results) < 2 and time.monotonic() < deadline:
    time.sleep(0.05)
for who in ("reader", "writer"):
    finish(who, "alive")
print("finished", flush=True)
"""


def main(lab):
    lab.start("backend", "o", [sys.executable, "-u", "-c", BACKEND, str(BACKEND_PORT)])
    plab = ProxyLab(lab, BACKEND_PORT)
    apps = None
    try:
        lab.wait_log("backend", "listening")
        plab.start(client_args=["--dead-peer", str(DEAD_PEER)])
        apps = spawn_in(lab, "c", [sys.executable, "-u", "-c", APPS, str(LPORT), str(BOUND)])
        out = Lines(apps)
        wait_until(lambda: "ready" in out.lines, 60, "both applications established and 1 MiB written",
                   lambda: apps.poll() is not None and "the applications exited: %s" % out.lines[-3:])
        victim = "origin" if proxy_lab.mode() == "relay" else "proxy_a"
        lab.procs[victim].kill()
        lab.procs[victim].wait()
        t_kill = time.monotonic()
        apps.stdin.write("killed\n")
        apps.stdin.flush()
        log("ok   - both applications established through %s; %s killed with SIGKILL" % (victim, victim))
        wait_until(lambda: "finished" in out.lines, BOUND + 60, "the applications' verdicts (hang detector)")
        backend_closed = [line for line in lab.log_text("backend").splitlines() if line.startswith("closed")]
        client_said = [line for line in plab.client_log().splitlines()
                       if any(w in line.lower() for w in ("dead", "keepalive", "reset", "unreachable", "timed out"))]
        log("#    backend saw %s (within %.1f s of the kill)" % (backend_closed or "no connection end",
                                                                 time.monotonic() - t_kill))
        for line in client_said[-5:]:
            log("#    client: %s" % line.strip())
        failures = []
        for who in ("reader", "writer"):
            line = out.last(who + " ")
            words = line.split() if line else [who, "nothing"]
            seconds = float(words[-2]) if len(words) >= 4 else -1
            if words[1] not in ("reset", "error") or seconds > BOUND:
                failures.append("%s: %s (want a reset within %g s)" % (who, line, BOUND))
            else:
                log("ok   - %s got %s %.1f s after the kill (bound %g s)" % (who, " ".join(words[1:-3]), seconds,
                                                                             BOUND))
        if failures:
            raise Failure("; ".join(failures))
        plab.labels.remove(victim)
        plab.stop()
        log("ok   - the other roam processes exited 0 on SIGTERM")
    except Failure as e:
        raise Failure("%s\n%s" % (e, plab.evidence()))
    finally:
        if apps is not None:
            end(apps)
        end(lab.procs["backend"])


if __name__ == "__main__":
    proxy_lab.require()
    netns_lab.run("pd", main, up_args=["--origin"])
