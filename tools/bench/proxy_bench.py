#!/usr/bin/env python3
"""The proxy topology (issue 12): a proxy move (both legs) against the application's view,
the proxy's cost against kernel TCP on the same path, and a dead proxy, in one run.

Lab (tests/netns/proxy_lab.py; tools/netns/topology up NAME --origin, TUN links, root):
roam-client in c (198.18.11.2, -L 127.0.0.1:9000 -> proxy A 198.18.12.2:7000) behind the
strict NAT of tools/netns/nat in r; proxy A in s and proxy B in s2 (roam-server proxy
--origin 198.18.14.2:7000, controls 198.18.2.1:7100 and 198.18.3.1:7100); the origin in o
(roam-server relay --backend 127.0.0.1:7070) beside a python backend (proxy_lab.BACKEND) on
0.0.0.0:7070. All roam processes are members of one lab pool; moves are `roamctl migrate`
run in r with the pool's operator key. Every probe is a python kernel client in c.

The kernel reference is the same path without Roamstack: the backend at the origin's kernel
address 198.18.4.1:7070, reached from c through the same NAT in r.

Figures:
  byte_exact            every stream through the proxy (the moved ones and the throughput
                        runs) arrived complete and SHA-256 exact.
  changeover_ms_proxy_1 two connections through the proxy: a stream paced at 8 MiB/s (for
                        byte_exact) and 64-byte echo rounds, one at a time; --reps moves
                        (A -> B, B -> A, ...) 2 s apart; t0 = the roamctl migrate process
                        starts (its start-up and Noise handshake included), t1 = it exited.
                        At t1 the old proxy had frozen and handed the sessions over, so an
                        echo that returns after t1 came through the moved proxy (both
                        legs): changeover = the first such return - t0 (an upper bound: it
                        includes roamctl's exit); median.
  gap_ms_proxy_1        the longest echo round in flight from t0 to that one (median): the
                        application's pause (jitter-sized when the move's pause is short).
                        Information: stream_gap_ms_proxy_1 (the longest pause of the paced
                        stream within 5 s after t0), echo_round_ms (a round's median).
  changeover_ms_client_move_1
                        the lab's client is replaced by roam-client --addr-from-device
                        (rtun0 198.18.11.1 peer 198.18.11.2); one connection through proxy
                        A does 64-byte echo rounds (0.5 ms apart) while c's rtun0 is
                        readdressed --client-moves times, 1 s apart, each time to a fresh
                        network 198.18.(21+i).0/24 behind a second strict NAT in c (in
                        front of r's). t0 = the `ip -batch` (add the new address, delete
                        the old one) is started in c; once it returned (t_ip) nothing
                        reaches the client over the old path (c has no route to the old
                        address), so the first echo returning after t_ip came over the new
                        path: changeover = its return - t0; median, and the samples
                        (changeover_ms_client_move_samples). gap_ms_client_move_1: the
                        longest round in flight until then (median); client_move_readdress_ms:
                        t_ip - t0 (median), inside both figures.
  client_move_reference_reconnect_ms
                        reference, same moves: right after `ip` returned, the same helper
                        opens a kernel TCP connection bound to the new kernel address
                        (198.18.(21+i).1, through the same two NATs) to the kernel backend
                        198.18.4.1:7070 and reads its first byte: that - t0; median (and
                        _samples). A lower bound of what an application without Roamstack
                        pays: it reconnects at once, as if told of the change.
  client_move_ratio_vs_reconnect  changeover_ms_client_move_1 / the reference.
  throughput_mib_s_proxy, throughput_mib_s_kernel
                        one --mib MiB download (backend BLAST) through the proxy and over
                        kernel TCP, each --reps times, interleaved; medians.
  throughput_ratio_proxy_vs_kernel  their ratio.
  connect_ms_proxy, connect_ms_kernel
                        connect() + the backend's first byte, through the forward (the
                        client's carrier to the proxy, the proxy's carrier to the origin,
                        the origin's kernel connect to the backend) and directly; medians
                        of 20 x --reps, interleaved.
  connect_overhead_ratio  connect_ms_proxy / connect_ms_kernel (seed 004 reports +200 %,
                        i.e. 3.0).
  dead_peer_reset_s     an idle reader through the proxy; the proxy that holds it is killed
                        (SIGKILL, no move); seconds until the reader's recv fails. null when
                        it got no reset within --dead-bound (dead_peer_outcome says what it
                        got: reset, error, eof (a clean EOF: wrong) or none).
The last line of stdout is one JSON object; notes go to stderr.
A figure that fails is reported in "errors" (by part) and the others are still measured.
Exit 0 when byte_exact holds and nothing failed, else 1; 77 when not root or when
roam-server has no proxy mode (the JSON line says why).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "netns"))
import netns_lab  # noqa: E402
import proxy_lab  # noqa: E402
from netns_lab import Failure  # noqa: E402
from proxy_lab import BACKEND, LPORT, MIB, ORIGIN_KERNEL, Lines, ProxyLab, end, spawn_in, wait_until  # noqa: E402

BACKEND_PORT = 7070
PACE = 8 * MIB

# In namespace c, one probe per run: argv[1] is the kind.
#   connect HOST PORT N         N times connect + first byte; prints "ms X" each
#   blast HOST PORT BYTES SEED  downloads BYTES; prints "got N SHA SECONDS"
#   paced HOST PORT BYTES SEED RATE
#                               a paced stream; prints "progress N" every 1 MiB, then
#                               "times T1 T2 ..." (monotonic arrival times) and "got N SHA"
#   idle HOST PORT              holds a connection; "ready"; then "reset|error X|eof after" +
#                               the monotonic time of the failure ("at T")
PROBE = r"""
import hashlib, socket, sys, time
kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])

def opened(cmd=None):
    s = socket.create_connection((host, port), timeout=30)
    if s.recv(1) != b"h":
        raise SystemExit("no first byte")
    if cmd:
        s.sendall(cmd)
    return s

if kind == "connect":
    for _ in range(int(sys.argv[4])):
        t = time.monotonic()
        s = socket.create_connection((host, port), timeout=30)
        first = s.recv(1)
        dt = time.monotonic() - t
        s.close()
        print("ms %.4f" % (dt * 1000) if first == b"h" else "bad %r" % first, flush=True)
        time.sleep(0.02)
elif kind in ("blast", "paced"):
    n, seed = int(sys.argv[4]), int(sys.argv[5])
    cmd = b"BLAST %d %d\n" % (n, seed) if kind == "blast" else b"STREAM %d %d %d\n" % (n, seed, int(sys.argv[6]))
    s = opened(cmd)
    s.settimeout(120)
    h, got, times, mark = hashlib.sha256(), 0, [], 0
    buf = bytearray(1 << 20)
    t0 = time.monotonic()
    while True:
        k = s.recv_into(buf)
        if not k:
            break
        if kind == "paced":
            times.append(time.monotonic())
        h.update(memoryview(buf)[:k])
        got += k
        if kind == "paced" and got - mark >= 1 << 20:
            mark = got
            print("progress", got, flush=True)
    seconds = time.monotonic() - t0
    if kind == "paced":
        print("times", " ".join("%.6f" % t for t in times), flush=True)
    print("got", got, h.hexdigest(), "%.6f" % seconds, flush=True)
elif kind == "rounds":
    # [PAUSE] 64-byte echo rounds, one at a time, PAUSE s apart (default 0.002), until
    # "stop" on stdin; "ready" after the first;
    # then "rounds S1 R1 S2 R2 ..." (monotonic send and receive times) and "bad K".
    import os, threading
    s = opened(b"ECHO\n")
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(120)
    stop, times, bad = threading.Event(), [], 0
    pause = float(sys.argv[4]) if len(sys.argv) > 4 else 0.002
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    while not stop.is_set():
        msg = os.urandom(64)
        t = time.monotonic()
        s.sendall(msg)
        got = b""
        while len(got) < 64:
            d = s.recv(64 - len(got))
            if not d:
                raise SystemExit("echo ended")
            got += d
        times.append((t, time.monotonic()))
        bad += got != msg
        if len(times) == 1:
            print("ready", flush=True)
        time.sleep(pause)
    print("rounds", " ".join("%.6f %.6f" % st for st in times), flush=True)
    print("bad", bad, flush=True)
elif kind == "idle":
    s = opened(b"IDLE\n")
    s.settimeout(None)
    print("ready", flush=True)
    try:
        d = s.recv(65536)
        what = "eof" if not d else "data"
    except ConnectionResetError:
        what = "reset"
    except OSError as e:
        what = "error-" + e.__class__.__name__
    print(what, "at %.6f" % time.monotonic(), flush=True)
"""


def note(*args):
    print("[proxy]", *args, file=sys.stderr, flush=True)


def probe(lab, *args, timeout=600):
    p = spawn_in(lab, "c", [sys.executable, "-c", PROBE] + [str(a) for a in args], stdin=False)
    try:
        out, _ = p.communicate(timeout=timeout)
    finally:
        end(p)
    if p.returncode != 0:
        raise Failure("probe %s: exit %s: %s" % (" ".join(map(str, args)), p.returncode, out.strip()[-500:]))
    return out.splitlines()


def expected_blast(size, seed):
    import hashlib
    import random
    block, h, left = random.Random(seed).randbytes(MIB), hashlib.sha256(), size
    while left:
        k = min(MIB, left)
        h.update(block[:k])
        left -= k
    return h.hexdigest()


def expected_stream(size, seed):
    import hashlib
    import random
    rng, h, left = random.Random(seed), hashlib.sha256(), size
    while left:
        d = rng.randbytes(min(65536, left))
        h.update(d)
        left -= len(d)
    return h.hexdigest()


def longest_gap(t0, times, window=5.0):
    """The longest pause in (t0, t0 + window] (t0 -> first arrival counts) and when it ended."""
    previous, best, ended = t0, 0.0, t0
    for t in times:
        if t <= t0:
            continue
        if t - t0 > window:
            break
        if t - previous > best:
            best, ended = t - previous, t
        previous = t
    return best * 1000, (ended - t0) * 1000


def connect_figures(lab, reps, out):
    proxy, kernel = [], []
    for _ in range(reps):
        for target, into in (((ORIGIN_KERNEL, BACKEND_PORT), kernel), (("127.0.0.1", LPORT), proxy)):
            for line in probe(lab, "connect", target[0], target[1], 20):
                if not line.startswith("ms "):
                    raise Failure("connect probe: %s" % line)
                into.append(float(line.split()[1]))
    out["connect_ms_proxy"] = round(statistics.median(proxy), 3)
    out["connect_ms_kernel"] = round(statistics.median(kernel), 3)
    out["connect_overhead_ratio"] = round(out["connect_ms_proxy"] / out["connect_ms_kernel"], 3)
    note("connect + first byte: proxy %.3f ms, kernel %.3f ms" % (out["connect_ms_proxy"], out["connect_ms_kernel"]))


def throughput_figures(lab, mib, reps, out, exact):
    size = mib * MIB
    want = expected_blast(size, 5)
    rates = {"proxy": [], "kernel": []}
    for rep in range(reps):
        for name, host, port in (("kernel", ORIGIN_KERNEL, BACKEND_PORT), ("proxy", "127.0.0.1", LPORT)):
            got = [line for line in probe(lab, "blast", host, port, size, 5) if line.startswith("got ")]
            if not got:
                raise Failure("blast probe %s printed no result" % name)
            _, n, digest, seconds = got[0].split()
            ok = int(n) == size and digest == want
            if name == "proxy":
                exact.append(ok)
            if not ok:
                raise Failure("%s download: %s bytes, sha256 %s; want %d, %s" % (name, n, digest, size, want))
            rates[name].append(size / MIB / float(seconds))
            note("throughput %s rep %d: %.1f MiB/s" % (name, rep + 1, rates[name][-1]))
    out["throughput_mib_s_proxy"] = round(statistics.median(rates["proxy"]), 1)
    out["throughput_mib_s_kernel"] = round(statistics.median(rates["kernel"]), 1)
    out["throughput_ratio_proxy_vs_kernel"] = round(out["throughput_mib_s_proxy"] / out["throughput_mib_s_kernel"], 3)


def changeover_figures(lab, plab, reps, out, exact):
    size = (2 * reps + 4) * PACE  # 2 s per move, 2 s before the first and after the last
    want = expected_stream(size, 11)
    p = spawn_in(lab, "c", [sys.executable, "-c", PROBE, "paced", "127.0.0.1", str(LPORT), str(size), "11", str(PACE)],
                 stdin=False)
    lines = Lines(p)
    echo = spawn_in(lab, "c", [sys.executable, "-c", PROBE, "rounds", "127.0.0.1", str(LPORT)])
    echoed = Lines(echo)
    starts, ends = [], []
    try:
        wait_until(lambda: "ready" in echoed.lines, 60, "the echo rounds running",
                   lambda: echo.poll() is not None and "the echo probe ended: %s" % echoed.lines[-3:])
        def progress():
            line = lines.last("progress")
            return int(line.split()[1]) if line else 0

        for i in range(reps):
            wait_until(lambda: progress() >= (2 + 2 * i) * PACE, 120, "stream progress before move %d" % (i + 1),
                       lambda: p.poll() is not None and "the probe ended: %s" % lines.lines[-3:])
            starts.append(time.monotonic())
            result, ms = plab.migrate(2)
            ends.append(time.monotonic())
            note("move %d: %s (roamctl %.1f ms)" % (i + 1, result, ms))
        p.wait(300)
        lines.join(30)
        echo.stdin.write("stop\n")
        echo.stdin.flush()
        echo.wait(60)
        echoed.join(30)
    finally:
        end(p)
        end(echo)
    got = lines.last("got ")
    times = lines.last("times")
    if not got or not times:
        raise Failure("paced probe (exit %s): %s" % (p.returncode, [line[:200] for line in lines.lines[-3:]]))
    _, n, digest, _ = got.split()
    ok = int(n) == size and digest == want
    exact.append(ok)
    if not ok:
        raise Failure("moved stream: %s bytes, sha256 %s; want %d, %s" % (n, digest, size, want))
    rounds_line, bad = echoed.last("rounds"), echoed.last("bad")
    if not rounds_line or bad != "bad 0":
        raise Failure("echo probe (exit %s): %s" % (echo.returncode, [line[:200] for line in echoed.lines[-3:]]))
    flat = [float(t) for t in rounds_line.split()[1:]]
    rounds = list(zip(flat[0::2], flat[1::2]))
    arrivals = [float(t) for t in times.split()[1:]]
    gaps, changeovers, stream_gaps = [], [], []
    for t0, t1 in zip(starts, ends):
        # At t1 the old proxy had frozen and handed the session over: an echo that comes back
        # after t1 came through the moved proxy (both legs). The first such one ends the
        # changeover; the longest round in flight in [t0, that one] is the pause.
        first = min((r for r in rounds if r[1] > t1), key=lambda r: r[1])
        gaps.append(max((r[1] - r[0]) * 1000 for r in rounds if r[1] > t0 and r[0] <= first[0]))
        changeovers.append((first[1] - t0) * 1000)
        stream_gaps.append(longest_gap(t0, arrivals)[0])
    note("changeovers (ms): %s; gaps (ms): %s" % (["%.1f" % c for c in changeovers], ["%.1f" % g for g in gaps]))
    out["changeover_ms_proxy_1"] = round(statistics.median(changeovers), 3)
    out["gap_ms_proxy_1"] = round(statistics.median(gaps), 3)
    out["stream_gap_ms_proxy_1"] = round(statistics.median(stream_gaps), 3)
    out["echo_round_ms"] = round(statistics.median([(r[1] - r[0]) * 1000 for r in rounds]), 3)
    out["moves"] = len(starts)


# The client move (seed 003, "a client moves"): roam-client --addr-from-device in c takes
# its address from rtun0's point-to-point address (kernel end .1, the client's .2); each
# move readdresses rtun0 to a fresh network 198.18.(21+i).0/24 behind a second strict NAT
# in c (masquerade to 198.18.1.1, new flows only from a SYN), in front of r's. The old
# network 198.18.11.0/24 passes c untouched (r's NAT only), as in tests/netns/client_move_test.py.
MOVE_OLD = ("198.18.11.1", "198.18.11.2")
MOVE_NETS = "198.18.16.0/20"  # the new networks (21..30): every move goes to a fresh one
MOVE_NAT = """
table inet roambenchmove
delete table inet roambenchmove
table inet roambenchmove {
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid drop
        iifname "rtun0" oifname "c0" ip saddr 198.18.11.0/24 accept
        iifname "c0" oifname "rtun0" ip daddr 198.18.11.0/24 accept
        iifname "rtun0" oifname "c0" ip saddr %(nets)s meta l4proto tcp tcp flags & (syn | ack | fin | rst) == syn ct state new accept
        drop
    }
    chain postrouting {
        type nat hook postrouting priority srcnat;
        oifname "c0" ip saddr %(nets)s masquerade
    }
}
""" % {"nets": MOVE_NETS}

# In namespace c: "ready", then per stdin line "move DEV OLD_KERNEL OLD_NODE NEW_KERNEL NEW_NODE":
# t0, the readdress in one `ip -batch` (the new address first, then the old one goes, as a
# network manager does), t_ip once it returned; then the kernel reference: a fresh kernel
# TCP connection bound to NEW_KERNEL to HOST:PORT (the kernel backend) and its first byte.
# Prints "moved T0 T_IP T_CONNECTED T_FIRST" (monotonic; the clock every namespace shares)
# or "error ...".
MOVER = r"""
import socket, subprocess, sys, time
host, port = sys.argv[1], int(sys.argv[2])
print("ready", flush=True)
for line in sys.stdin:
    w = line.split()
    if len(w) != 6 or w[0] != "move":
        break
    dev, old_k, old_n, new_k, new_n = w[1:]
    batch = "address add %s peer %s dev %s\naddress del %s peer %s dev %s\n" % (new_k, new_n, dev, old_k, old_n, dev)
    t0 = time.monotonic()
    r = subprocess.run(["ip", "-batch", "-"], input=batch.encode(), capture_output=True)
    t_ip = time.monotonic()
    if r.returncode:
        print("error ip:", r.stderr.decode().strip(), flush=True)
        continue
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(30)
        s.bind((new_k, 0))
        s.connect((host, port))
        t_c = time.monotonic()
        first = s.recv(1)
        t_f = time.monotonic()
        s.close()
    except OSError as e:
        print("error reconnect:", e, flush=True)
        continue
    if first != b"h":
        print("error reconnect: first byte %r" % first, flush=True)
        continue
    print("moved %.6f %.6f %.6f %.6f" % (t0, t_ip, t_c, t_f), flush=True)
"""


def server_counters(plab):
    """Proxy A's counters of client moves (None when its status does not parse)."""
    try:
        st = json.loads(plab.status("a"))
    except ValueError:
        return None
    return {k: st.get(k, 0) for k in ("peer_moves_applied", "peer_moves_refused", "handover_syns_accepted")}


def client_move_figures(lab, plab, moves, out):
    """The lab's client is replaced by one with --addr-from-device (the parts before this one
    ran on the original; dead_peer, after it, runs on this one); one echo connection through
    proxy A lives through `moves` readdressings."""
    if lab.procs["client"].poll() is None:
        lab.stop_cleanly(["client"])
    plab.labels.remove("client")
    netns_lab.run_tool([netns_lab.TOPOLOGY, "exec", lab.name, "c", "ip", "addr", "flush", "dev", "rtun0"],
                       "flush rtun0")
    netns_lab.run_tool([netns_lab.TOPOLOGY, "exec", lab.name, "c", "ip", "addr", "add", MOVE_OLD[0], "peer",
                        MOVE_OLD[1], "dev", "rtun0"], "address rtun0")
    nft = subprocess.run([netns_lab.TOPOLOGY, "exec", lab.name, "c", "nft", "-f", "-"], input=MOVE_NAT, text=True,
                         capture_output=True)
    if nft.returncode != 0:
        raise Failure("the NAT in c: %s" % nft.stderr.strip())
    for key in ("net.netfilter.nf_conntrack_tcp_be_liberal=0", "net.netfilter.nf_conntrack_tcp_loose=0"):
        netns_lab.run_tool([netns_lab.TOPOLOGY, "exec", lab.name, "c", "sysctl", "-q", "-w", key], key)
    label = "client_move"
    lab.start(label, "c", [netns_lab.ROAM_CLIENT, "--link", "tun:rtun0", "--addr-from-device", "-L",
                           "127.0.0.1:%d:%s:7000" % (LPORT, proxy_lab.PROXIES["a"][1])])
    plab.labels.insert(0, label)
    plab.at = "a"  # a new client dials proxy A
    lab.wait_log(label, "interface up")
    carrier = "%s:7000" % proxy_lab.PROXIES["a"][1]
    mover = spawn_in(lab, "c", [sys.executable, "-u", "-c", MOVER, ORIGIN_KERNEL, str(BACKEND_PORT)])
    moved = Lines(mover)
    echo = spawn_in(lab, "c", [sys.executable, "-c", PROBE, "rounds", "127.0.0.1", str(LPORT), "0.0005"])
    echoed = Lines(echo)
    results = []
    before = server_counters(plab)

    def answer(i):
        """The mover's answer to move i (0-based), or None before it."""
        answers = [x for x in moved.lines if x.startswith(("moved", "error"))]
        return answers[i] if len(answers) > i else None

    def broken():
        text = lab.log_text(label)
        if "refused our move" in text:
            return "the proxy refused the client's move"
        if echo.poll() is not None:
            return "the echo probe ended: %s" % echoed.lines[-3:]
        if mover.poll() is not None:
            return "the mover ended: %s" % moved.lines[-3:]
        return None

    try:
        wait_until(lambda: "ready" in echoed.lines and "ready" in moved.lines, 60, "the echo rounds and the mover",
                   broken)
        old = MOVE_OLD
        for i in range(moves):
            new = ("198.18.%d.1" % (21 + i), "198.18.%d.2" % (21 + i))
            time.sleep(1.0)  # echo rounds on the path before the move
            mover.stdin.write("move rtun0 %s %s %s %s\n" % (old + new))
            mover.stdin.flush()
            line = wait_until(lambda: answer(i), 60, "the readdress of move %d" % (i + 1), broken)
            if not line.startswith("moved"):
                raise Failure("move %d: %s" % (i + 1, line))
            results.append([float(t) for t in line.split()[1:]])
            wait_until(lambda: lab.log_text(label).count("handover to %s: " % carrier) > i, 30,
                       "the client's handover %d being answered" % (i + 1), broken)
            note("client move %d: %s -> %s" % (i + 1, old[1], new[1]))
            old = new
        time.sleep(1.0)  # echo rounds on the last path
        echo.stdin.write("stop\n")
        echo.stdin.flush()
        echo.wait(60)
        echoed.join(30)
        mover.stdin.write("end\n")
        mover.stdin.flush()
        mover.wait(30)
    finally:
        end(echo)
        end(mover)
    rounds_line, bad = echoed.last("rounds"), echoed.last("bad")
    if not rounds_line or bad != "bad 0":
        raise Failure("echo probe (exit %s): %s" % (echo.returncode, [line[:200] for line in echoed.lines[-3:]]))
    flat = [float(t) for t in rounds_line.split()[1:]]
    rounds = list(zip(flat[0::2], flat[1::2]))
    changeovers, gaps, reconnects = [], [], []
    for t0, t_ip, _, t_first in results:
        # Once `ip` returned the old address was gone: c has no route to it, so nothing
        # reaches the client over the old path any more, and the first echo that returns
        # after t_ip came over the new one (both ways).
        after = [r for r in rounds if r[1] > t_ip]
        if not after:
            raise Failure("no echo returned after a move")
        first = min(after, key=lambda r: r[1])
        changeovers.append((first[1] - t0) * 1000)
        gaps.append(max((r[1] - r[0]) * 1000 for r in rounds if r[1] > t0 and r[0] <= first[0]))
        reconnects.append((t_first - t0) * 1000)
    note("client moves: changeovers (ms) %s; gaps (ms) %s; kernel reconnects (ms) %s" % (
        ["%.1f" % c for c in changeovers], ["%.1f" % g for g in gaps], ["%.1f" % r for r in reconnects]))
    out["changeover_ms_client_move_1"] = round(statistics.median(changeovers), 3)
    out["changeover_ms_client_move_samples"] = [round(c, 3) for c in changeovers]
    out["gap_ms_client_move_1"] = round(statistics.median(gaps), 3)
    out["client_move_reference_reconnect_ms"] = round(statistics.median(reconnects), 3)
    out["client_move_reference_reconnect_samples"] = [round(r, 3) for r in reconnects]
    out["client_move_ratio_vs_reconnect"] = round(out["changeover_ms_client_move_1"] /
                                                  out["client_move_reference_reconnect_ms"], 3)
    out["client_move_readdress_ms"] = round(statistics.median([(r[1] - r[0]) * 1000 for r in results]), 3)
    out["client_moves"] = len(results)
    out.pop("changeover_client_move_reason", None)
    after = server_counters(plab)
    if before is not None and after is not None:  # what proxy A counted during the moves
        out["client_move_server"] = {k: after[k] - before[k] for k in after}
        if out["client_move_server"]["peer_moves_applied"] != moves or out["client_move_server"]["peer_moves_refused"]:
            raise Failure("proxy A counted %s for %d client moves" % (out["client_move_server"], moves))


def dead_peer_figure(lab, plab, bound, out):
    p = spawn_in(lab, "c", [sys.executable, "-c", PROBE, "idle", "127.0.0.1", str(LPORT)], stdin=False)
    lines = Lines(p)
    try:
        wait_until(lambda: "ready" in lines.lines, 60, "the idle reader established",
                   lambda: p.poll() is not None and "the probe ended: %s" % lines.lines[-3:])
        victim = "origin" if proxy_lab.mode() == "relay" else "proxy_" + plab.holder()
        lab.procs[victim].kill()
        lab.procs[victim].wait()
        t_kill = time.monotonic()
        plab.labels.remove(victim)
        note("%s killed (SIGKILL); waiting up to %g s for the reader's reset" % (victim, bound))
        deadline = t_kill + bound
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        p.poll()
        lines.join(5)
    finally:
        end(p)
    verdict = [line for line in lines.lines if " at " in line]
    if not verdict:
        out["dead_peer_reset_s"] = None
        out["dead_peer_outcome"] = "none within %g s" % bound
        return
    what, _, at = verdict[0].split()
    seconds = float(at) - t_kill
    out["dead_peer_outcome"] = what
    out["dead_peer_seconds"] = round(seconds, 3)
    out["dead_peer_reset_s"] = round(seconds, 3) if what != "eof" and what != "data" else None
    note("dead proxy: the reader got %s after %.3f s" % (what, seconds))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mib", type=int, default=256, help="MiB per throughput run (default 256)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every figure (default 3)")
    parser.add_argument("--dead-bound", type=float, default=120.0,
                        help="seconds to wait for the dead-peer reset (default 120)")
    parser.add_argument("--client-moves", type=int, default=5, choices=range(1, 11), metavar="N",
                        help="client moves (readdressings) for changeover_ms_client_move_1 (1-10, default 5)")
    parser.add_argument("--only", default="", help="run only these parts (comma list of connect, throughput, "
                        "changeover, client_move, dead_peer; development)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the work directory")
    parser.add_argument("--lab", default="pb%04d" % (os.getpid() % 10000), help="lab name (set by proxy.sh)")
    args = parser.parse_args()

    out = {"bench": "proxy", "byte_exact": False, "changeover_ms_proxy_1": None, "gap_ms_proxy_1": None,
           "changeover_ms_client_move_1": None,
           "changeover_client_move_reason": "not measured in this run",
           "throughput_ratio_proxy_vs_kernel": None, "connect_overhead_ratio": None, "dead_peer_reset_s": None,
           "mib": args.mib, "reps": args.reps}
    if os.geteuid() != 0:
        out["skipped"] = "needs root"
        print(json.dumps(out, separators=(",", ":")))
        return 77
    text = subprocess.run([netns_lab.ROAM_SERVER, "--help"], capture_output=True, text=True).stdout
    if proxy_lab.mode() != "relay" and not re.search(r"^\s+proxy\b", text, re.M):
        out["skipped"] = "roam-server has no proxy mode"
        note(out["skipped"])
        print(json.dumps(out, separators=(",", ":")))
        return 77
    workdir = tempfile.mkdtemp(prefix="roam-proxy-bench-")
    lab = netns_lab.Lab(args.lab, workdir)
    exact = []
    code = 0
    try:
        up = subprocess.run([netns_lab.TOPOLOGY, "up", args.lab, "--origin"], capture_output=True, text=True)
        if up.returncode != 0:
            raise Failure("topology up: " + up.stderr)
        lab.start("backend", "o", [sys.executable, "-u", "-c", BACKEND, str(BACKEND_PORT)])
        lab.wait_log("backend", "listening")
        plab = ProxyLab(lab, BACKEND_PORT)
        plab.start()
        parts = [("connect", lambda: connect_figures(lab, args.reps, out)),
                 ("throughput", lambda: throughput_figures(lab, args.mib, args.reps, out, exact)),
                 ("changeover", lambda: changeover_figures(lab, plab, args.reps, out, exact)),
                 ("client_move", lambda: client_move_figures(lab, plab, args.client_moves, out)),
                 ("dead_peer", lambda: dead_peer_figure(lab, plab, args.dead_bound, out))]
        if proxy_lab.mode() == "relay":  # development mode (no proxies, no moves): tests/netns/proxy_lab.py
            parts = [p for p in parts if p[0] not in ("changeover", "client_move")]
        if args.only:
            parts = [p for p in parts if p[0] in args.only.split(",")]
        for name, figure in parts:  # one failed figure does not keep the others from being measured
            try:
                figure()
            except (Failure, subprocess.TimeoutExpired) as e:
                out.setdefault("errors", {})[name] = str(e)[:1000]
                note("FAILED %s: %s" % (name, e))
                if name in ("throughput", "changeover"):  # a stream through the proxy broke
                    exact.append(False)
                code = 1
        out["byte_exact"] = bool(exact) and all(exact)
        if code == 0:
            plab.stop()
    except (Failure, subprocess.TimeoutExpired) as e:
        out.setdefault("errors", {})["lab"] = str(e)[:2000]
        note("FAILED: %s" % e)
        code = 1
    finally:
        lab.kill_all()
        subprocess.run([netns_lab.TOPOLOGY, "down", args.lab], capture_output=True)
        if args.keep_logs or code:
            note("logs kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if not out["byte_exact"]:
        code = 1
    print(json.dumps(out, separators=(",", ":")))
    return code


if __name__ == "__main__":
    sys.exit(main())
