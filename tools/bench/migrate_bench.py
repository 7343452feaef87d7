#!/usr/bin/env python3
"""Server-move changeover against an application-level reconnect, measured in one run.

Topology (UDP links on loopback, no privilege): roam-client 198.18.11.2 with forwards to
server A 198.18.12.2 and server B 198.18.13.2, both roam-server with --control, members of
one lab pool (tools/lab_keys.py: --key, --pool-cert, --operators); roamctl runs with the
pool's operator key ($ROAMCTL_KEY), so its Noise handshake with A is inside t0..t1.

Figures (milliseconds, each the median over --reps):
  changeover_ms_1   one `files` download through the forward; t0 = roamctl migrate starts;
                    the end of the longest pause in the received stream after t0 is the
                    first byte delivered on the new path. changeover = that time - t0.
  gap_ms_1          the length of that longest pause (the client saw no byte for so long).
  frozen_ms_1       how long that download's connection stayed frozen on A: from its freeze
                    to its release once B took it (A's status: last_move_frozen_us); of
                    which capture_ms_1 is the freeze to the session frame handed to the
                    control connection; snapshot_bytes_1 the stream bytes it carried.
  changeover_ms_1_busy, gap_ms_1_busy, frozen_ms_1_busy, capture_ms_1_busy,
  snapshot_bytes_1_busy
                    the same for a busy connection: an echo connection to A into which the
                    client writes --busy-mib (32) without reading for --stall-ms (2000), so
                    every queue fills (A's receive window and send buffer hold the echo's
                    unread input and unsent output: >= 4 MiB with lwIP's fixed windows,
                    snapshot_bytes_1_busy says how much); t0 = roamctl starts and the
                    client reads the echo from then on. Its reference is reconnect_ms_1.
  reconnect_ms_1    reference: at t0 the client closes the download from A and asks B for
                    the rest (`NAME OFFSET`) on a new connection; time to the first byte.
  changeover_ms_1000  1000 echo connections to A; t0 = roamctl migrate starts; once roamctl
                    answered, each connection sends one byte; time until every echo is back.
  reconnect_ms_1000 reference: at t0 the 1000 connections are closed and 1000 new ones open
                    to B, each sends one byte; time until every echo is back.
--send-buffer fixed runs the servers with lwIP's fixed 4 MiB send buffer (as before issue
16), auto (default) with buffers sized to the path; --connections 0 skips the 1000.
The last line of stdout is one JSON object.
"""
import argparse
import hashlib
import json
import os
import random
import resource
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import free_port, stop_processes  # noqa: E402
from control_auth import lab_pool  # noqa: E402

ROAM_SERVER = os.environ.get("ROAM_SERVER", "build/apps/roam-server")
ROAM_CLIENT = os.environ.get("ROAM_CLIENT", "build/apps/roam-client")
ROAMCTL = os.environ.get("ROAMCTL", os.path.join(os.path.dirname(ROAM_SERVER), "roamctl"))
CLIENT_ADDR, A_ADDR, B_ADDR = "198.18.11.2", "198.18.12.2", "198.18.13.2"


def note(*args):
    print("[migrate]", *args, file=sys.stderr, flush=True)


class Lab:
    """Two servers (same mode) and one client with a forward to each."""

    def __init__(self, mode, workdir, pool, root=None, send_buffer="auto"):
        self.procs = []
        self.workdir = workdir
        udp = {name: free_port(socket.SOCK_DGRAM) for name in ("c", "a", "b")}
        self.control = {name: "127.0.0.1:%d" % free_port(socket.SOCK_STREAM) for name in ("a", "b")}
        self.forward = {name: free_port(socket.SOCK_STREAM) for name in ("a", "b")}
        extra = ["--root", root] if root else []
        for name, addr in (("a", A_ADDR), ("b", B_ADDR)):
            self.start("server_" + name, [ROAM_SERVER, "--link", "udp:127.0.0.1:%d" % udp[name], "--addr", addr,
                                          "--route", "198.18.11.0/24=127.0.0.1:%d" % udp["c"],
                                          "--control", self.control[name], "--send-buffer", send_buffer] +
                       pool.server_args(name) +
                       ["--log-level", "warn", mode] + extra)
        self.start("client", [ROAM_CLIENT, "--link", "udp:127.0.0.1:%d" % udp["c"], "--addr", CLIENT_ADDR,
                              "--route", "198.18.12.0/24=127.0.0.1:%d" % udp["a"],
                              "--route", "198.18.13.0/24=127.0.0.1:%d" % udp["b"], "--log-level", "warn",
                              "--send-buffer", send_buffer,
                              "-L", "127.0.0.1:%d:%s:7000" % (self.forward["a"], A_ADDR),
                              "-L", "127.0.0.1:%d:%s:7000" % (self.forward["b"], B_ADDR)])
        for port in self.forward.values():
            wait_for_port(port)
        for control in self.control.values():
            wait_for_port(int(control.split(":")[1]))

    def start(self, name, argv):
        log = open(os.path.join(self.workdir, name + ".log"), "w")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    def migrate(self, source, target):
        out = subprocess.run([ROAMCTL, "migrate", "--from", self.control[source], "--to", self.control[target]],
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError("roamctl: " + out.stdout.strip() + out.stderr.strip())
        return out.stdout.strip()

    def status(self, name):
        out = subprocess.run([ROAMCTL, "status", "--server", self.control[name]], capture_output=True, text=True,
                             timeout=30)
        return json.loads(out.stdout) if out.returncode == 0 else {}

    def stop(self):
        stop_processes(self.procs, 10)


def wait_for_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def download_with_move(lab, name, size, move_at, move, stall_s=0.0):
    """Downloads through forward a; calls move() from a thread once move_at bytes arrived
    (after not reading for stall_s, so that every queue on the way fills).
    Returns (sha256, t0, arrival times after t0)."""
    s = connect(lab.forward["a"])
    s.sendall(("%s\n" % name).encode())
    # A session moves only once its client registered it on its control channel: on a
    # loaded machine that can take longer than a third of the file. Not reading meanwhile.
    wait_registered(lab, "a", 1)
    digest = hashlib.sha256()
    got = 0
    t0 = None
    times = []
    mover = None
    while True:
        data = s.recv(1 << 20)
        now = time.monotonic()
        if not data:
            break
        digest.update(data)
        got += len(data)
        if t0 is not None:
            times.append(now)
        if mover is None and got >= move_at:
            if stall_s > 0:
                time.sleep(stall_s)
            t0 = time.monotonic()
            mover = threading.Thread(target=move, daemon=True)
            mover.start()
    s.close()
    if mover:
        mover.join(60)
    if got != size:
        raise RuntimeError("download: got %d of %d bytes" % (got, size))
    return digest.hexdigest(), t0, times


def wait_registered(lab, server, count, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.status(server).get("registrations", 0) >= count:
            return
        time.sleep(0.05)
    raise RuntimeError("the client never registered %d connection(s) at %s" % (count, server))


def longest_gap(t0, times):
    """The longest pause after t0 (counting t0 -> first arrival) and the time it ended."""
    previous, best, end = t0, 0.0, t0
    for t in times:
        if t - previous > best:
            best, end = t - previous, t
        previous = t
    return best * 1000, (end - t0) * 1000


def reconnect_download(lab, name, size, at):
    """Reference: download from A, at `at` bytes close and resume from B at that offset."""
    s = connect(lab.forward["a"])
    s.sendall(("%s\n" % name).encode())
    got = 0
    while got < at:
        data = s.recv(min(1 << 20, at - got))
        if not data:
            raise RuntimeError("reference download ended early")
        got += len(data)
    t0 = time.monotonic()
    s.close()
    s = connect(lab.forward["b"])
    s.sendall(("%s %d\n" % (name, got)).encode())
    first = s.recv(1 << 20)
    t1 = time.monotonic()
    if not first:
        raise RuntimeError("reference resume got nothing")
    got += len(first)
    while True:
        data = s.recv(1 << 20)
        if not data:
            break
        got += len(data)
    s.close()
    if got != size:
        raise RuntimeError("reference download: got %d of %d" % (got, size))
    return (t1 - t0) * 1000


def echo_all(socks, payload=b"x"):
    """Sends one byte on each socket and waits for every echo; returns when all are back."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        s.send(payload)
        sel.register(s, selectors.EVENT_READ)
    waiting = len(socks)
    deadline = time.monotonic() + 60
    while waiting:
        if time.monotonic() > deadline:
            raise RuntimeError("%d echoes never came back" % waiting)
        for key, _ in sel.select(timeout=1):
            data = key.fileobj.recv(16)
            if not data:
                raise RuntimeError("a connection closed")
            sel.unregister(key.fileobj)
            waiting -= 1
    sel.close()
    for s in socks:
        s.setblocking(True)


def open_many(port, count):
    socks = []
    for _ in range(count):
        socks.append(connect(port))
    echo_all(socks)  # established end to end
    return socks


def machine_load():
    """The 1, 5 and 15 minute load averages and the CPU count, as `uptime` sees them."""
    one, five, fifteen = os.getloadavg()
    return {"load1": round(one, 2), "load5": round(five, 2), "load15": round(fifteen, 2), "cpus": os.cpu_count()}


def echo_with_move(lab, total, stall_s, move):
    """Writes `total` bytes into an echo connection to A without reading for stall_s, then
    calls move() from a thread (t0) and reads the echo. Returns (byte-exact, t0, arrival
    times after t0)."""
    s = connect(lab.forward["a"])
    s.sendall(b"x")
    if s.recv(1) != b"x":
        raise RuntimeError("busy echo: no first echo")
    wait_registered(lab, "a", 1)
    payload = random.Random(2).randbytes(total)
    writer = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
    writer.start()
    time.sleep(stall_s)
    t0 = time.monotonic()
    mover = threading.Thread(target=move, daemon=True)
    mover.start()
    digest = hashlib.sha256()
    got = 0
    times = []
    while got < total:
        data = s.recv(1 << 20)
        if not data:
            break
        times.append(time.monotonic())
        digest.update(data)
        got += len(data)
    writer.join(60)
    mover.join(60)
    s.close()
    if got != total:
        raise RuntimeError("busy echo: got %d of %d bytes" % (got, total))
    return digest.hexdigest() == hashlib.sha256(payload).hexdigest(), t0, times


def one_move(lab, name, size, expected, results, suffix, stall_s, busy_bytes=0):
    """One download moved A -> B at a third of the file; figures into results[*suffix]."""
    replies = []
    if busy_bytes:
        exact, t0, times = echo_with_move(lab, busy_bytes, stall_s, lambda: replies.append(lab.migrate("a", "b")))
    else:
        digest, t0, times = download_with_move(lab, name, size, size // 3,
                                               lambda: replies.append(lab.migrate("a", "b")), stall_s)
        exact = digest == expected
    gap, changeover = longest_gap(t0, times)
    results["gap_ms" + suffix].append(gap)
    results["changeover_ms" + suffix].append(changeover)
    a_status = lab.status("a")
    frozen_us = a_status.get("last_move_frozen_us")
    capture_us = a_status.get("last_move_capture_us")
    results["frozen_ms" + suffix].append(frozen_us / 1000 if frozen_us is not None else None)
    results["capture_ms" + suffix].append(capture_us / 1000 if capture_us is not None else None)
    results["snapshot_bytes" + suffix].append(a_status.get("last_move_snapshot_bytes"))
    note("  changeover %.2f ms, gap %.2f ms, frozen on A %s ms (capture %s ms, %s bytes); roamctl: %s" % (
        changeover, gap, results["frozen_ms" + suffix][-1], results["capture_ms" + suffix][-1],
        results["snapshot_bytes" + suffix][-1], replies[0] if replies else "-"))
    return exact, replies, a_status


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--file-mib", type=int, default=64)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stall-ms", type=int, default=2000, help="busy echo: the reader's pause before t0")
    parser.add_argument("--busy-mib", type=int, default=32, help="busy echo: MiB written into it")
    parser.add_argument("--send-buffer", choices=("auto", "fixed"), default="auto",
                        help="the servers' --send-buffer (fixed: lwIP's 4 MiB for every connection, as before)")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.connections + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    workdir = tempfile.mkdtemp(prefix="roam-bench-migrate-")
    size = args.file_mib << 20
    name = "bench.bin"
    data = random.Random(1).randbytes(size)
    with open(os.path.join(workdir, name), "wb") as f:
        f.write(data)
    expected = hashlib.sha256(data).hexdigest()
    del data
    # The servers' keys and certificates (outside the `files` root); every roamctl below
    # uses the operator key.
    keydir = tempfile.mkdtemp(prefix="roam-bench-migrate-keys-")
    try:
        pool = lab_pool(ROAMCTL, keydir)
    except (RuntimeError, OSError):
        shutil.rmtree(keydir, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    results = {"changeover_ms_1": [], "gap_ms_1": [], "reconnect_ms_1": [], "changeover_ms_1000": [],
               "reconnect_ms_1000": [], "roamctl_ms_1": [], "roamctl_ms_1000": [], "late_packets_dropped_1": [],
               "held_back_packets_1": [], "frozen_ms_1": [], "capture_ms_1": [], "snapshot_bytes_1": [],
               "changeover_ms_1_busy": [], "gap_ms_1_busy": [], "frozen_ms_1_busy": [], "capture_ms_1_busy": [],
               "snapshot_bytes_1_busy": []}
    load_before = machine_load()
    byte_exact = True
    try:
        for rep in range(args.reps):
            note("rep %d/%d: one download moved A -> B" % (rep + 1, args.reps))
            lab = Lab("files", workdir, pool, root=workdir, send_buffer=args.send_buffer)
            try:
                exact, replies, a_status = one_move(lab, name, size, expected, results, "_1", 0.0)
                byte_exact = byte_exact and exact
                reported = float(replies[0].split(" in ")[1].split(" ms")[0]) if replies else None
                results["roamctl_ms_1"].append(reported)
                # Zero loss: packets that reached A after the freeze were dropped there and
                # recovered by retransmission from the new path; count them.
                b_status = lab.status("b")
                results["late_packets_dropped_1"].append(a_status.get("silenced_input_drops", 0))
                results["held_back_packets_1"].append(b_status.get("parked_output_drops", 0))
                note("  late packets dropped at A: %s; packets B held back until the client arrived: %s" % (
                    results["late_packets_dropped_1"][-1], results["held_back_packets_1"][-1]))
                results["reconnect_ms_1"].append(reconnect_download(lab, name, size, size // 3))
                note("  reconnect reference %.2f ms" % results["reconnect_ms_1"][-1])
            finally:
                lab.stop()

            note("rep %d/%d: one busy echo (%d MiB written, reader stalled %d ms) moved A -> B" % (
                rep + 1, args.reps, args.busy_mib, args.stall_ms))
            lab = Lab("echo", workdir, pool, send_buffer=args.send_buffer)
            try:
                exact, _, _ = one_move(lab, name, size, expected, results, "_1_busy", args.stall_ms / 1000,
                                       busy_bytes=args.busy_mib << 20)
                byte_exact = byte_exact and exact
            finally:
                lab.stop()

            if args.connections == 0:
                continue
            note("rep %d/%d: %d echo connections moved A -> B" % (rep + 1, args.reps, args.connections))
            lab = Lab("echo", workdir, pool, send_buffer=args.send_buffer)
            try:
                socks = open_many(lab.forward["a"], args.connections)
                t0 = time.monotonic()
                reply = lab.migrate("a", "b")
                echo_all(socks)
                results["changeover_ms_1000"].append((time.monotonic() - t0) * 1000)
                results["roamctl_ms_1000"].append(float(reply.split(" in ")[1].split(" ms")[0]))
                note("  changeover %.2f ms; roamctl: %s" % (results["changeover_ms_1000"][-1], reply))
                for s in socks:
                    s.close()
                socks = open_many(lab.forward["a"], args.connections)
                t0 = time.monotonic()
                for s in socks:
                    s.close()
                socks = [connect(lab.forward["b"]) for _ in range(args.connections)]
                echo_all(socks)
                results["reconnect_ms_1000"].append((time.monotonic() - t0) * 1000)
                note("  reconnect reference %.2f ms" % results["reconnect_ms_1000"][-1])
                for s in socks:
                    s.close()
            finally:
                lab.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(keydir, ignore_errors=True)

    load_after = machine_load()
    med = {k: round(statistics.median(v), 3) for k, v in results.items() if v and None not in v}
    print("migrate: median over %d reps (ms); samples in the JSON" % args.reps)
    for k in ("changeover_ms_1", "gap_ms_1", "frozen_ms_1", "capture_ms_1", "snapshot_bytes_1", "reconnect_ms_1",
              "changeover_ms_1_busy", "gap_ms_1_busy", "frozen_ms_1_busy", "capture_ms_1_busy",
              "snapshot_bytes_1_busy", "changeover_ms_1000", "reconnect_ms_1000"):
        print("  %-22s %12.3f" % (k, med.get(k, float("nan"))))
    print("  byte_exact             %s" % byte_exact)
    print("  load before / after    %s / %s (load average, %s CPUs)" % (
        load_before["load1"], load_after["load1"], load_before["cpus"]))
    out = {"bench": "migrate", "file_mib": args.file_mib, "connections": args.connections, "reps": args.reps,
           "stall_ms": args.stall_ms, "busy_mib": args.busy_mib, "send_buffer": args.send_buffer,
           "byte_exact": byte_exact, "load_before": load_before, "load_after": load_after}
    out.update(med)
    if "reconnect_ms_1000" in med and "changeover_ms_1000" in med:
        out["ratio_changeover_vs_reconnect_1000"] = round(med["changeover_ms_1000"] / med["reconnect_ms_1000"], 3)
    if "reconnect_ms_1" in med and "changeover_ms_1" in med:
        out["ratio_changeover_vs_reconnect_1"] = round(med["changeover_ms_1"] / med["reconnect_ms_1"], 3)
    if "reconnect_ms_1" in med and "changeover_ms_1_busy" in med:
        out["ratio_changeover_vs_reconnect_1_busy"] = round(med["changeover_ms_1_busy"] / med["reconnect_ms_1"], 3)
    out["samples"] = {k: [round(x, 3) for x in v if x is not None] for k, v in results.items()}
    print(json.dumps(out, separators=(",", ":")))
    return 0 if byte_exact else 1


if __name__ == "__main__":
    sys.exit(main())
