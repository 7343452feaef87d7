#!/usr/bin/env python3
"""Server-move changeover against an application-level reconnect, measured in one run.

Topology (UDP links on loopback, no privilege): roam-client 198.18.11.2 with forwards to
server A 198.18.12.2 and server B 198.18.13.2, both roam-server with --control, members of
one lab pool (tools/lab_keys.py: --key, --pool-cert, --operators).

t0 of every single-connection move: the migrate_request frame is written to A's control
port, on a connection opened (Noise handshake done) and proved served beforehand, as the
handover and scale benches do (until 2026-12-04: roamctl's start, so its process start-up
and handshake were inside every figure). Both servers stamp the move's stages with
CLOCK_MONOTONIC (status gauges last_move_*_at_us, last_import_*), the clock of
time.monotonic() here, so the bench lines them up with its own arrivals.

Figures (milliseconds, each the median over --reps):
  changeover_ms_1   one `files` download through the forward; the move starts at a third
                    of the file. changeover = the first byte the application receives at or
                    after the instant B resumed the connection (B's last_import_resumed_us:
                    the client's first packet reached B, which restarted its transmission at
                    once; no byte of B's can arrive earlier) - t0. Until 2026-12-04 it was
                    the end of the longest pause after t0, which under load was a scheduling
                    pause hundreds of ms after the move (longest_gap_ms_1 and
                    longest_gap_end_ms_1 keep that reading; longest_gap_before_ms_1 is the
                    longest pause of the same download before t0, for comparison).
  gap_ms_1          the pause that first byte ended: the application saw no byte for so long
                    (short when the socket buffers still held A's bytes while the move ran).
  at_request_ms_1, at_freeze_ms_1, at_import_ms_1, at_acm_ms_1, at_resumed_ms_1
                    the move's timeline after t0: A read the request, froze the session, B
                    imported it, A handed the ACM to the client's channel, B heard the client.
  at_captured_ms_1, at_encoded_ms_1, at_sent_ms_1, at_import_read_ms_1,
  at_import_answered_ms_1, at_answer_read_ms_1, at_released_ms_1
                    inside the frozen interval: A captured the session, encoded its frame,
                    sealed it and handed it to the socket; B read the frame, (imported it,)
                    handed its session_result to the socket; A read that answer, released
                    the connection (at_released - at_freeze = frozen_ms_1).
  reply_ms_1        A's reply to the migrate request - t0.
  control_reused_1  1 when the timed move started on the control connection a warm-up move
                    A -> B (no session, run before each timed one) left open (--control-keep
                    on, the default; off: every move opens its own, as before).
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
                    snapshot_bytes_1_busy says how much); t0 = the migrate_request is
                    written and the client reads the echo from then on; changeover and gap as
                    for the download. Its reference is reconnect_ms_1.
  *_1_busy_precopy, precopy_bytes_1_busy_precopy
                    the same busy move with both servers --precopy on (PROTOCOL.md 4.3):
                    the queues go to B while the echo runs, the freeze sends the delta;
                    precopy_bytes_1_busy_precopy = pre-copied bytes the snapshot relied on
                    (A's last_move_precopy_bytes). ratio_frozen_precopy_vs_plain_1_busy =
                    frozen_ms_1_busy_precopy / frozen_ms_1_busy, same run.
  *_1_precopy       the same download with both servers --precopy on (part dlprecopy): its
                    send queue goes to B while it runs, then one held round (PROTOCOL.md 4.3
                    "The held round": the download stops queueing file bytes, TCP still sends)
                    and the freeze carries no new bytes. ratio_frozen_precopy_vs_plain_1 =
                    frozen_ms_1_precopy / frozen_ms_1, and the changeover likewise, same run.
  reconnect_ms_1    reference, same lab right after the move: the client downloads from A
                    again, at a third of the file closes that connection and asks B for the
                    rest (`NAME OFFSET`) on a new one; from the close to the first byte.
  changeover_ms_1000  1000 echo connections to A; t0 = roamctl migrate starts; once roamctl
                    answered, each connection sends one byte; time until every echo is back.
  reconnect_ms_1000 reference: at t0 the 1000 connections are closed and 1000 new ones open
                    to B, each sends one byte; time until every echo is back.
  *_1_busy_rcvfixed the busy echo again, in the same run, with every process at
                    --receive-buffer fixed (lwIP's 4 MiB window, as before): the reference for
                    what sized receive windows save (ratio_snapshot_bytes_busy_vs_rcvfixed).
                    Skipped with --receive-buffer fixed.
--parts picks the labs of each rep (download, dlprecopy, busy, rcvfixed, precopy, many); --log-level
sets every roam process's, --keep-logs DIR keeps each lab's logs.
--send-buffer fixed runs the servers with lwIP's fixed 4 MiB send buffer (as before issue
16), auto (default) with buffers sized to the path; --receive-buffer likewise for receive
windows (every process); --connections 0 skips the 1000; --busy-only runs only the busy
moves (without and with pre-copy, and the fixed-window reference).
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
from control_auth import lab_pool, use_debian_python  # noqa: E402
from handover_bench import FRAME_MIGRATE_REQUEST, ControlConnection  # noqa: E402

ROAM_SERVER = os.environ.get("ROAM_SERVER", "build/apps/roam-server")
ROAM_CLIENT = os.environ.get("ROAM_CLIENT", "build/apps/roam-client")
ROAMCTL = os.environ.get("ROAMCTL", os.path.join(os.path.dirname(ROAM_SERVER), "roamctl"))
CLIENT_ADDR, A_ADDR, B_ADDR = "198.18.11.2", "198.18.12.2", "198.18.13.2"


def note(*args):
    print("[migrate]", *args, file=sys.stderr, flush=True)


class Lab:
    """Two servers (same mode) and one client with a forward to each."""

    def __init__(self, mode, workdir, pool, root=None, send_buffer="auto", receive_buffer="auto", precopy=False,
                 log_level="warn", control_keep="on"):
        self.procs = []
        self.workdir = workdir
        self.pool = pool
        udp = {name: free_port(socket.SOCK_DGRAM) for name in ("c", "a", "b")}
        self.control = {name: "127.0.0.1:%d" % free_port(socket.SOCK_STREAM) for name in ("a", "b")}
        self.forward = {name: free_port(socket.SOCK_STREAM) for name in ("a", "b")}
        extra = ["--root", root] if root else []
        for name, addr in (("a", A_ADDR), ("b", B_ADDR)):
            self.start("server_" + name, [ROAM_SERVER, "--link", "udp:127.0.0.1:%d" % udp[name], "--addr", addr,
                                          "--route", "198.18.11.0/24=127.0.0.1:%d" % udp["c"],
                                          "--control", self.control[name], "--send-buffer", send_buffer,
                                          "--receive-buffer", receive_buffer,
                                          "--precopy", "on" if precopy else "off",
                                          "--control-keep", control_keep] +
                       pool.server_args(name) +
                       ["--log-level", log_level, mode] + extra)
        self.start("client", [ROAM_CLIENT, "--link", "udp:127.0.0.1:%d" % udp["c"], "--addr", CLIENT_ADDR,
                              "--route", "198.18.12.0/24=127.0.0.1:%d" % udp["a"],
                              "--route", "198.18.13.0/24=127.0.0.1:%d" % udp["b"], "--log-level", log_level,
                              "--send-buffer", send_buffer, "--receive-buffer", receive_buffer,
                              "-L", "127.0.0.1:%d:%s:7000" % (self.forward["a"], A_ADDR),
                              "-L", "127.0.0.1:%d:%s:7000" % (self.forward["b"], B_ADDR)])
        for port in self.forward.values():
            wait_for_port(port)
        for control in self.control.values():
            wait_for_port(int(control.split(":")[1]))

    def start(self, name, argv):
        log = open(os.path.join(self.workdir, name + ".log"), "w")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))

    def mover(self, source, target):
        """A move source -> target as its first instant: the control connection to source is
        opened now (Noise handshake done, a status request answered), so that calling the
        returned function writes nothing but the migrate_request (as handover and scale do).
        It returns (t0, t1, reply): t0 right before the write, t1 once the reply is in."""
        control = ControlConnection(self.control[source], self.pool.operator_key, 60)

        def move():
            try:
                t0, t1, reply = control.request(FRAME_MIGRATE_REQUEST, "to=" + self.control[target], 120)
            finally:
                control.close()
            if not reply.startswith("ok"):
                raise RuntimeError("migrate %s -> %s: %s" % (source, target, reply))
            return t0, t1, reply
        return move

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


def run_mover(move, out):
    """Thread body: runs move() (see Lab.mover) and keeps its (t0, t1, reply) or its error."""
    try:
        out.append(move())
    except Exception as e:  # noqa: BLE001 -- reported by the caller
        out.append(e)


def mover_result(thread, out):
    thread.join(120)
    if not out:
        raise RuntimeError("the move never answered")
    if isinstance(out[0], Exception):
        raise out[0]
    return out[0]


def download_with_move(lab, name, size, move_at, stall_s=0.0):
    """Downloads through forward a; moves A -> B from a thread once move_at bytes arrived
    (after not reading for stall_s, so that every queue on the way fills).
    Returns (sha256, (t0, t1, reply) of the move, every arrival time)."""
    s = connect(lab.forward["a"])
    s.sendall(("%s\n" % name).encode())
    # A session moves only once its client registered it on its control channel: on a
    # loaded machine that can take longer than a third of the file. Not reading meanwhile.
    wait_registered(lab, "a", 1)
    move = lab.mover("a", "b")
    digest = hashlib.sha256()
    got = 0
    times = []
    mover = None
    out = []
    while True:
        data = s.recv(1 << 20)
        now = time.monotonic()
        if not data:
            break
        digest.update(data)
        got += len(data)
        times.append(now)
        if mover is None and got >= move_at:
            if stall_s > 0:
                time.sleep(stall_s)
            mover = threading.Thread(target=run_mover, args=(move, out), daemon=True)
            mover.start()
    s.close()
    result = mover_result(mover, out) if mover else None
    if got != size:
        raise RuntimeError("download: got %d of %d bytes" % (got, size))
    return digest.hexdigest(), result, times


def wait_registered(lab, server, count, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.status(server).get("registrations", 0) >= count:
            return
        time.sleep(0.05)
    raise RuntimeError("the client never registered %d connection(s) at %s" % (count, server))


def longest_gap(t0, times):
    """The longest pause after t0 (counting t0 -> first arrival) and the time it ended
    (the definition of changeover_ms_1 until 2026-12-04: `longest_*` in the JSON)."""
    previous, best, end = t0, 0.0, t0
    for t in times:
        if t <= t0:
            continue
        if t - previous > best:
            best, end = t - previous, t
        previous = t
    return best * 1000, (end - t0) * 1000


def longest_gap_before(t0, times):
    """The longest pause between two arrivals before t0, in ms: the machine's own pauses
    (scheduling), for comparison with the move's."""
    before = [t for t in times if t < t0]
    return max((b - a for a, b in zip(before, before[1:])), default=0.0) * 1000


def move_pause(t0, times, resumed_at):
    """The pause of the move itself: the first arrival at or after `resumed_at` (the
    instant B first heard the client and restarted the connection's transmission: no byte
    of B's can arrive earlier) ends it. Returns (gap: that arrival - the one before it, or
    t0 if none came after t0; changeover: that arrival - t0), in ms; None if no byte came
    after resumed_at."""
    previous = t0
    for t in times:
        if t >= resumed_at:
            return (t - previous) * 1000, (t - t0) * 1000
        if t > previous:
            previous = t
    return None


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


def echo_with_move(lab, total, stall_s):
    """Writes `total` bytes into an echo connection to A without reading for stall_s, then
    moves A -> B from a thread and reads the echo. Returns (byte-exact, (t0, t1, reply) of
    the move, arrival times from the move's start)."""
    s = connect(lab.forward["a"])
    s.sendall(b"x")
    if s.recv(1) != b"x":
        raise RuntimeError("busy echo: no first echo")
    wait_registered(lab, "a", 1)
    move = lab.mover("a", "b")
    payload = random.Random(2).randbytes(total)
    writer = threading.Thread(target=s.sendall, args=(payload,), daemon=True)
    writer.start()
    time.sleep(stall_s)
    out = []
    mover = threading.Thread(target=run_mover, args=(move, out), daemon=True)
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
    result = mover_result(mover, out)
    s.close()
    if got != total:
        raise RuntimeError("busy echo: got %d of %d bytes" % (got, total))
    return digest.hexdigest() == hashlib.sha256(payload).hexdigest(), result, times


class SkipPart(Exception):
    """A part of a rep the arguments leave out."""


def one_move(lab, name, size, expected, results, suffix, stall_s, busy_bytes=0):
    """One download (or busy echo) moved A -> B; figures into results[*suffix]. Returns
    (byte-exact, the move's reply, A's status, B's status)."""
    # Warm-up: a move A -> B with nothing to move yet, so that the timed one finds A's
    # control connection to B open (--control-keep on, PROTOCOL.md 4.6) as every move but
    # a server's first to a target does; with --control-keep off it opens its own.
    note("  warm-up move (no session): " + lab.migrate("a", "b"))
    if busy_bytes:
        exact, (t0, t1, reply), times = echo_with_move(lab, busy_bytes, stall_s)
    else:
        digest, (t0, t1, reply), times = download_with_move(lab, name, size, size // 3, stall_s)
        exact = digest == expected
    a_status = lab.status("a")
    b_status = lab.status("b")
    # Both servers stamp with CLOCK_MONOTONIC (uv_hrtime), as time.monotonic() does here.
    resumed_us = b_status.get("last_import_resumed_us")
    pause = move_pause(t0, times, resumed_us / 1e6) if resumed_us else None
    longest_gap_ms, longest_end_ms = longest_gap(t0, times)
    if pause is None:
        note("  B reports no resumed connection (or no byte came after it): changeover unknown")
        pause = (None, None)
    results["gap_ms" + suffix].append(pause[0])
    results["changeover_ms" + suffix].append(pause[1])
    results["longest_gap_ms" + suffix].append(longest_gap_ms)
    results["longest_gap_end_ms" + suffix].append(longest_end_ms)
    if not busy_bytes:
        results["longest_gap_before_ms" + suffix].append(longest_gap_before(t0, times))
    results["reply_ms" + suffix].append((t1 - t0) * 1000)
    frozen_us = a_status.get("last_move_frozen_us")
    capture_us = a_status.get("last_move_capture_us")
    results["frozen_ms" + suffix].append(frozen_us / 1000 if frozen_us is not None else None)
    results["capture_ms" + suffix].append(capture_us / 1000 if capture_us is not None else None)
    results["snapshot_bytes" + suffix].append(a_status.get("last_move_snapshot_bytes"))
    # 1 when the timed move started on the warm-up's kept control connection.
    results.setdefault("control_reused" + suffix, []).append(a_status.get("control_connections_reused"))
    stages = timeline(t0, a_status, b_status)
    for k, v in stages.items():
        results.setdefault(k + suffix, []).append(v)
    if "precopy_bytes" + suffix in results:
        results["precopy_bytes" + suffix].append(a_status.get("last_move_precopy_bytes"))
        note("  pre-copied and relied on: %s bytes" % results["precopy_bytes" + suffix][-1])
    fmt = lambda v: "-" if v is None else "%.2f" % v  # noqa: E731
    note("  changeover %s ms, gap %s ms (longest pause after t0: %.2f ms, ended %.2f ms after t0), frozen on A %s "
         "ms (capture %s ms, %s bytes); A answered %.2f ms after t0: %s" % (
             fmt(pause[1]), fmt(pause[0]), longest_gap_ms, longest_end_ms, fmt(results["frozen_ms" + suffix][-1]),
             fmt(results["capture_ms" + suffix][-1]), results["snapshot_bytes" + suffix][-1], (t1 - t0) * 1000, reply))
    if stages:
        note("  timeline after t0 (ms): " + ", ".join("%s %.2f" % (k[3:-3], v) for k, v in stages.items()))
    return exact, reply, a_status, b_status


# The servers' stamps of the last move (CLOCK_MONOTONIC microseconds, status gauges), in
# the order a move passes them: A got the request, A froze the session, captured it,
# encoded its session frame, sealed it and handed it to the socket; B read it, imported
# it, handed its session_result to the socket; A read that answer, released the session,
# sent the ACM (the move's end there); B heard the client (the connection resumed).
STAGES = (("at_request_ms", "a", "last_move_request_at_us"), ("at_freeze_ms", "a", "last_move_frozen_at_us"),
          ("at_captured_ms", "a", "last_move_captured_at_us"), ("at_encoded_ms", "a", "last_move_encoded_at_us"),
          ("at_sent_ms", "a", "last_move_sent_at_us"), ("at_import_read_ms", "b", "last_import_read_at_us"),
          ("at_import_ms", "b", "last_import_at_us"), ("at_import_answered_ms", "b", "last_import_answered_at_us"),
          ("at_answer_read_ms", "a", "last_move_answer_read_at_us"),
          ("at_released_ms", "a", "last_move_released_at_us"), ("at_acm_ms", "a", "last_move_acm_at_us"),
          ("at_resumed_ms", "b", "last_import_resumed_us"))


def timeline(t0, a_status, b_status):
    """Each stage's instant after t0 (ms), for the stages the servers report."""
    out = {}
    for key, server, gauge in STAGES:
        value = (a_status if server == "a" else b_status).get(gauge)
        if value:
            out[key] = (value / 1e6 - t0) * 1000
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--file-mib", type=int, default=64)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stall-ms", type=int, default=2000, help="busy echo: the reader's pause before t0")
    parser.add_argument("--busy-mib", type=int, default=32, help="busy echo: MiB written into it")
    parser.add_argument("--send-buffer", choices=("auto", "fixed"), default="auto",
                        help="the servers' --send-buffer (fixed: lwIP's 4 MiB for every connection, as before)")
    parser.add_argument("--receive-buffer", choices=("auto", "fixed"), default="auto",
                        help="every process's --receive-buffer (fixed: lwIP's 4 MiB window, as before); auto also "
                             "runs the busy echo with fixed as a reference")
    parser.add_argument("--busy-only", action="store_true",
                        help="only the busy echo, without and with --precopy (skips downloads and --connections)")
    parser.add_argument("--parts", default="download,dlprecopy,busy,rcvfixed,precopy,many",
                        help="which labs each rep runs (comma-separated): download (changeover_ms_1 and its reference "
                             "reconnect_ms_1), dlprecopy (the download with --precopy on), busy, rcvfixed, precopy (the busy echo plain, with fixed windows, with "
                             "pre-copy), many (--connections)")
    parser.add_argument("--log-level", default="warn", help="every roam process's --log-level")
    parser.add_argument("--control-keep", choices=("on", "off"), default="on",
                        help="the servers' --control-keep: the timed move reuses the warm-up move's "
                             "control connection (on) or opens one (off, as before)")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy each lab's logs into DIR/repN-PART/")
    args = parser.parse_args()
    use_debian_python()
    # The move runs in a thread beside the reader, which holds the GIL while data keeps
    # coming: with Python's default 5 ms switch interval the migrate_request's write waited
    # up to that long after t0 (at_request_ms_1_busy was 2.6-3.1 ms on a quiet machine).
    sys.setswitchinterval(0.0002)
    parts = set(args.parts.split(","))
    unknown = parts - {"download", "dlprecopy", "busy", "rcvfixed", "precopy", "many"}
    if unknown:
        parser.error("unknown --parts: " + ",".join(sorted(unknown)))
    if args.busy_only:
        parts -= {"download", "dlprecopy", "many"}
    if args.receive_buffer != "auto":
        parts.discard("rcvfixed")
    if args.connections == 0:
        parts.discard("many")
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
    results = {}
    for suffix in ("_1", "_1_precopy", "_1_busy", "_1_busy_rcvfixed", "_1_busy_precopy"):
        for k in ("changeover_ms", "gap_ms", "longest_gap_ms", "longest_gap_end_ms", "longest_gap_before_ms",
                  "reply_ms", "frozen_ms",
                  "capture_ms", "snapshot_bytes"):
            results[k + suffix] = []
    for k in ("reconnect_ms_1", "changeover_ms_1000", "reconnect_ms_1000", "roamctl_ms_1000",
              "late_packets_dropped_1", "held_back_packets_1", "precopy_bytes_1_busy_precopy",
              "precopy_bytes_1_precopy"):
        results[k] = []
    load_before = machine_load()
    byte_exact = True

    def lab_of(rep, part, *lab_args, **lab_kwargs):
        lab = Lab(*lab_args, log_level=args.log_level, control_keep=args.control_keep, **lab_kwargs)
        lab.keep_as = os.path.join(args.keep_logs, "rep%d-%s" % (rep + 1, part)) if args.keep_logs else None
        return lab

    def done_with(lab):
        lab.stop()
        if lab.keep_as:
            os.makedirs(lab.keep_as, exist_ok=True)
            for f in os.listdir(workdir):
                if f.endswith(".log"):
                    shutil.copy(os.path.join(workdir, f), lab.keep_as)

    busy = (("busy", "_1_busy", args.receive_buffer, False, "one busy echo (%d MiB written, reader stalled %d ms)" % (
                args.busy_mib, args.stall_ms)),
            ("rcvfixed", "_1_busy_rcvfixed", "fixed", False,
             "the same busy echo, every receive window fixed at 4 MiB (reference)"),
            # Both servers with --precopy on: the echo's queues go to B while it runs, and
            # the freeze sends the delta (PROTOCOL.md 4.3 "Pre-copy").
            ("precopy", "_1_busy_precopy", args.receive_buffer, True, "the same busy echo with --precopy on"))
    try:
        for rep in range(args.reps):
            if "download" in parts:
                note("rep %d/%d: one download moved A -> B" % (rep + 1, args.reps))
                lab = lab_of(rep, "download", "files", workdir, pool, root=workdir, send_buffer=args.send_buffer,
                             receive_buffer=args.receive_buffer)
                try:
                    exact, _, a_status, b_status = one_move(lab, name, size, expected, results, "_1", 0.0)
                    byte_exact = byte_exact and exact
                    # Zero loss: packets that reached A after the freeze were dropped there and
                    # recovered by retransmission from the new path; count them.
                    results["late_packets_dropped_1"].append(a_status.get("silenced_input_drops", 0))
                    results["held_back_packets_1"].append(b_status.get("parked_output_drops", 0))
                    note("  late packets dropped at A: %s; packets B held back until the client arrived: %s" % (
                        results["late_packets_dropped_1"][-1], results["held_back_packets_1"][-1]))
                    results["reconnect_ms_1"].append(reconnect_download(lab, name, size, size // 3))
                    note("  reconnect reference %.2f ms" % results["reconnect_ms_1"][-1])
                finally:
                    done_with(lab)

            if "dlprecopy" in parts:
                note("rep %d/%d: one download moved A -> B, both servers --precopy on" % (rep + 1, args.reps))
                lab = lab_of(rep, "dlprecopy", "files", workdir, pool, root=workdir, send_buffer=args.send_buffer,
                             receive_buffer=args.receive_buffer, precopy=True)
                try:
                    exact, _, a_status, _ = one_move(lab, name, size, expected, results, "_1_precopy", 0.0)
                    byte_exact = byte_exact and exact
                    results.setdefault("precopy_held_rounds_1_precopy", []).append(
                        a_status.get("precopy_held_rounds"))
                finally:
                    done_with(lab)

            for part, suffix, receive_buffer, precopy, what in busy:
                if part not in parts:
                    continue
                note("rep %d/%d: %s moved A -> B" % (rep + 1, args.reps, what))
                lab = lab_of(rep, part, "echo", workdir, pool, send_buffer=args.send_buffer,
                             receive_buffer=receive_buffer, precopy=precopy)
                try:
                    exact, _, _, _ = one_move(lab, name, size, expected, results, suffix, args.stall_ms / 1000,
                                              busy_bytes=args.busy_mib << 20)
                    byte_exact = byte_exact and exact
                finally:
                    done_with(lab)

            if "many" not in parts:
                continue
            note("rep %d/%d: %d echo connections moved A -> B" % (rep + 1, args.reps, args.connections))
            lab = lab_of(rep, "many", "echo", workdir, pool, send_buffer=args.send_buffer,
                         receive_buffer=args.receive_buffer)
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
                done_with(lab)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(keydir, ignore_errors=True)

    load_after = machine_load()
    med = {k: round(statistics.median(v), 3) for k, v in results.items() if v and None not in v}
    print("migrate: median over %d reps (ms); samples in the JSON" % args.reps)
    for k in ("changeover_ms_1", "gap_ms_1", "frozen_ms_1", "capture_ms_1", "snapshot_bytes_1", "reconnect_ms_1",
              "at_freeze_ms_1", "at_captured_ms_1", "at_encoded_ms_1", "at_sent_ms_1", "at_import_read_ms_1",
              "at_import_ms_1", "at_import_answered_ms_1", "at_answer_read_ms_1", "at_released_ms_1",
              "at_acm_ms_1", "at_resumed_ms_1", "longest_gap_ms_1",
              "longest_gap_end_ms_1", "longest_gap_before_ms_1",
              "changeover_ms_1_precopy", "gap_ms_1_precopy", "frozen_ms_1_precopy", "snapshot_bytes_1_precopy",
              "precopy_bytes_1_precopy",
              "changeover_ms_1_busy", "gap_ms_1_busy", "frozen_ms_1_busy", "capture_ms_1_busy",
              "snapshot_bytes_1_busy", "frozen_ms_1_busy_rcvfixed", "snapshot_bytes_1_busy_rcvfixed",
              "changeover_ms_1_busy_precopy", "gap_ms_1_busy_precopy",
              "frozen_ms_1_busy_precopy", "capture_ms_1_busy_precopy", "snapshot_bytes_1_busy_precopy",
              "precopy_bytes_1_busy_precopy", "changeover_ms_1000", "reconnect_ms_1000"):
        print("  %-28s %12.3f" % (k, med.get(k, float("nan"))))
    print("  byte_exact             %s" % byte_exact)
    print("  load before / after    %s / %s (load average, %s CPUs)" % (
        load_before["load1"], load_after["load1"], load_before["cpus"]))
    out = {"bench": "migrate", "file_mib": args.file_mib, "connections": args.connections, "reps": args.reps,
           "stall_ms": args.stall_ms, "busy_mib": args.busy_mib, "send_buffer": args.send_buffer,
           "control_keep": args.control_keep,
           "receive_buffer": args.receive_buffer,
           "parts": ",".join(p for p in ("download", "dlprecopy", "busy", "rcvfixed", "precopy", "many") if p in parts),
           # t0: the migrate_request written on an open control connection (before
           # 2026-12-04: roamctl's start); changeover ends at the first byte after B resumed
           # the connection (before: at the end of the longest pause after t0).
           "t0": "migrate_request_write", "changeover_end": "first_byte_after_resume",
           "byte_exact": byte_exact, "load_before": load_before, "load_after": load_after}
    out.update(med)
    if "reconnect_ms_1000" in med and "changeover_ms_1000" in med:
        out["ratio_changeover_vs_reconnect_1000"] = round(med["changeover_ms_1000"] / med["reconnect_ms_1000"], 3)
    if "reconnect_ms_1" in med and "changeover_ms_1" in med:
        out["ratio_changeover_vs_reconnect_1"] = round(med["changeover_ms_1"] / med["reconnect_ms_1"], 3)
    if "reconnect_ms_1" in med and "changeover_ms_1_busy" in med:
        out["ratio_changeover_vs_reconnect_1_busy"] = round(med["changeover_ms_1_busy"] / med["reconnect_ms_1"], 3)
    if med.get("snapshot_bytes_1_busy_rcvfixed"):
        out["ratio_snapshot_bytes_busy_vs_rcvfixed"] = round(
            med["snapshot_bytes_1_busy"] / med["snapshot_bytes_1_busy_rcvfixed"], 3)
    if med.get("frozen_ms_1_busy_rcvfixed"):
        out["ratio_frozen_busy_vs_rcvfixed"] = round(med["frozen_ms_1_busy"] / med["frozen_ms_1_busy_rcvfixed"], 3)
    # The download pre-copied (held round) against the same download without, same run.
    if med.get("frozen_ms_1") and "frozen_ms_1_precopy" in med:
        out["ratio_frozen_precopy_vs_plain_1"] = round(med["frozen_ms_1_precopy"] / med["frozen_ms_1"], 3)
    if med.get("changeover_ms_1") and "changeover_ms_1_precopy" in med:
        out["ratio_changeover_precopy_vs_plain_1"] = round(med["changeover_ms_1_precopy"] / med["changeover_ms_1"], 3)
    # Pre-copy against the same busy move without it, same run (the reference).
    if med.get("frozen_ms_1_busy") and "frozen_ms_1_busy_precopy" in med:
        out["ratio_frozen_precopy_vs_plain_1_busy"] = round(med["frozen_ms_1_busy_precopy"] / med["frozen_ms_1_busy"], 3)
    out["samples"] = {k: [round(x, 3) for x in v if x is not None] for k, v in results.items()}
    print(json.dumps(out, separators=(",", ":")))
    return 0 if byte_exact else 1


if __name__ == "__main__":
    sys.exit(main())
