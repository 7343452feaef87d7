#!/usr/bin/env python3
"""NAT handover: how long a carrier connection is interrupted when its server moves and a
strict stateful NAT sits in front of the client, against an application-level reconnect
through the same NAT, measured in one run.

Lab (tools/netns/topology, TUN links; root): roam-server echo on s (198.18.12.2, control
198.18.2.1:7100) and on s2 (198.18.13.2, control 198.18.3.1:7100); roam-client on rtun0 in c
(198.18.11.2) with -L 127.0.0.1:9000 -> 198.18.12.2:7000 and -L 127.0.0.1:9001 ->
198.18.13.2:7000; kernel clients in c use the forwards; the move is asked for from r, by the
driver itself speaking the control protocol (stack/migrate/control_frame.hpp) to s's control
port as the lab pool's operator (the port's Noise XX handshake through
tests/integration/control_port.py's SecureControl, so the driver runs under /usr/bin/python3
for python3-dissononce): no roamctl process for the move (roamctl status, with the same
operator key, still polls the registrations); both servers are members of one lab pool
(tools/lab_keys.py: --key, --pool-cert, --operators);
tools/netns/nat puts the strict NAT in r (new flows only from a client-side TCP SYN). Every
measurement gets a fresh lab and fresh processes.

t0 of every move: the control connection to s is opened (handshake done, and proved served:
a status_request answered on it) ahead of the move; t0 is taken right before the
migrate_request frame ("to=198.18.3.1:7100") is written to it; t1 when s's reply frame
("ok moved ...") is in.

Figures (milliseconds, each the median over --reps):
  changeover_ms_nat_1     NAT on. One connection does 64-byte echo rounds (send, wait for the
                          echo, repeat). t0 = the migrate_request s -> s2 is written.
                          One round is in flight when s freezes the connection; its echo can
                          only come back once the connection works on the new path.
                          changeover = that echo's arrival - t0. That round is the one in
                          flight when the client logged the ACM (see stalled_round).
  gap_ms_nat_1            how long that round waited for its echo: the application's pause.
  changeover_ms_direct_1  the same with no NAT (handover left at its default).
  changeover_ms_nat_1000  NAT on; --connections echo connections; t0 = the migrate_request is
                          written; once s answered, each connection sends one byte; until
                          every echo is back.
  reconnect_ms_nat_1      reference, same lab and NAT as changeover_ms_nat_1, right after its
                          move: a NEW connection through the forward to s2 and one 64-byte
                          echo, timed from connect() to the echo.
  handover_ms_nat_1, client_changeover_ms_nat_1
                          the client's own log: "handover to ...: N of N connection(s)
                          answered in X ms" and "changeover to ...: N connection(s) heard
                          from on the new path in X ms after the ACM".
  rtt_ms_nat              kernel TCP handshake (connect()) from c to 198.18.13.2:7000 through
                          the NAT, median of 20 per rep. Not ICMP: the NAT admits new flows
                          only from TCP SYNs, so a ping through it is dropped.
  goal_ms_1               1.5 * rtt_ms_nat + 5 (goal_met_1: changeover_ms_nat_1 within it;
                          goal_met_gap_1: gap_ms_nat_1 within it).
  byte_exact              every stream that crossed a move came back identical: a --stream-mib
                          pseudo-random stream moved at a third (SHA-256), every echo round,
                          every one-byte echo of the 1000.
  blocked_without_handover  once per run: processes with --handover off (when the build has
                          the flag), NAT on: after the move the connection gets no echo within
                          3 s and the NAT's invalid + blocked counters grew.
The last line of stdout is one JSON object; notes go to stderr.
Exit 0 when byte_exact and blocked_without_handover hold and nothing failed, else 1;
77 when not root.
"""
import argparse
import concurrent.futures
import ctypes
import datetime
import hashlib
import json
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
TOPOLOGY = os.path.join(ROOT, "tools", "netns", "topology")
NAT = os.path.join(ROOT, "tools", "netns", "nat")
ROAM_SERVER = os.environ.get("ROAM_SERVER", os.path.join(ROOT, "build", "apps", "roam-server"))
ROAM_CLIENT = os.environ.get("ROAM_CLIENT", os.path.join(ROOT, "build", "apps", "roam-client"))
ROAMCTL = os.environ.get("ROAMCTL", os.path.join(os.path.dirname(ROAM_SERVER), "roamctl"))
sys.path.insert(0, HERE)
from control_auth import OperatorConnection, lab_pool, use_debian_python  # noqa: E402

CLIENT_ADDR = "198.18.11.2"
SERVER = {"s": "198.18.12.2", "s2": "198.18.13.2"}
CONTROL = {"s": "198.18.2.1:7100", "s2": "198.18.3.1:7100"}
FORWARD = {"s": 9000, "s2": 9001}
ROUND = 64                # bytes per echo round
PAPER_CHANGEOVER_MS = 200  # seed 000's reported changeover, for comparison
CLONE_NEWNET = 0x40000000

HANDOVER_LINE = re.compile(r"handover to (\S+): (\d+) of (\d+) connection\(s\) answered in ([0-9.]+) ms")
CHANGEOVER_LINE = re.compile(r"changeover to (\S+): (\d+) connection\(s\) heard from on the new path in ([0-9.]+) ms "
                             r"after the ACM")


def note(*args):
    print("[handover]", *args, file=sys.stderr, flush=True)


class Failed(Exception):
    """One measurement failed; the run goes on and counts it."""


def mono():
    return time.monotonic()


# ------------------------------------------------------------------------------ namespaces

_libc = ctypes.CDLL(None, use_errno=True)


def _enter_netns(path):
    """Moves the calling thread (only it: setns is per thread) into a network namespace."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns %s: %s" % (path, os.strerror(err)))
    finally:
        os.close(fd)


class Netns:
    """Worker threads living in one namespace of the lab. Sockets created by a call belong
    to that namespace (and keep it after, from any thread); processes started by a call are
    born in it. Used instead of `ip netns exec` so that no helper's start sits near a clock."""

    def __init__(self, name, workers):
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name,
                                                          initializer=_enter_netns,
                                                          initargs=("/run/netns/" + name,))

    def call(self, fn, *args, **kwargs):
        return self.pool.submit(fn, *args, **kwargs).result()

    def close(self):
        self.pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------ control protocol

# stack/migrate/control_frame.hpp: u32 payload length (big-endian) | u8 type | payload.
FRAME_MIGRATE_REQUEST = 1
FRAME_REPLY = 4
FRAME_STATUS_REQUEST = 5
FRAME_HEADER = struct.Struct("!IB")
MAX_REPLY = 1 << 20  # a reply is one line of text (a status one of JSON)


def control_frame(kind, text):
    payload = text.encode("ascii")
    return FRAME_HEADER.pack(len(payload), kind) + payload


def read_reply(sock, started, timeout, what):
    """Reads one frame from a control connection; returns its text. Raises Failed when the
    frame is not a reply, the connection closes or `timeout` seconds pass from `started`
    (monotonic) first."""
    deadline = started + timeout
    data = b""
    while True:
        if len(data) >= FRAME_HEADER.size:
            length, kind = FRAME_HEADER.unpack_from(data)
            if kind != FRAME_REPLY or length > MAX_REPLY:
                raise Failed("%s: unexpected frame (type %d, %d bytes)" % (what, kind, length))
            if len(data) >= FRAME_HEADER.size + length:
                if len(data) > FRAME_HEADER.size + length:
                    raise Failed("%s: bytes after the reply" % what)
                return data[FRAME_HEADER.size:].decode("utf-8", "replace").strip()
        left = deadline - mono()
        try:
            if left <= 0:
                raise socket.timeout()
            sock.settimeout(left)
            chunk = sock.recv(65536)
        except socket.timeout:
            raise Failed("%s: no reply within %g s" % (what, timeout))
        if not chunk:
            raise Failed("%s: connection closed without a reply" % what)
        data += chunk


class ControlConnection:
    """A kernel TCP connection to a server's control port as operator `key_file`, made
    inside the calling thread's namespace. Opened ahead of the move (the Noise handshake
    done) and proved served (a status_request answered on it: the server has accepted and
    authenticated it and reads it), so that the move starts with nothing but the write of
    the migrate_request (one encrypted record)."""

    def __init__(self, address, key_file, timeout):
        self.address = address
        self.sock = OperatorConnection(address, key_file, timeout)
        try:
            self.sock.sendall(control_frame(FRAME_STATUS_REQUEST, ""))
            read_reply(self.sock, mono(), timeout, "status on " + address)
        except BaseException:
            self.sock.close()
            raise

    def request(self, kind, text, timeout):
        """Writes one frame; returns (t0, t1, reply): t0 right before the write, t1 when the
        reply frame is complete."""
        frame = control_frame(kind, text)
        self.sock.settimeout(timeout)
        t0 = mono()
        self.sock.sendall(frame)
        reply = read_reply(self.sock, t0, timeout, "migrate on " + self.address)
        return t0, mono(), reply

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------------------ the lab

def supports_handover_flag():
    out = subprocess.run([ROAM_CLIENT, "--help"], capture_output=True, text=True)
    return "--handover" in out.stdout + out.stderr


class Lab:
    """A fresh lab: namespaces, optionally the NAT, two echo servers and the client."""

    def __init__(self, name, logdir, nat, pool, handover=None):
        self.name = name
        self.pool = pool
        self.logdir = logdir
        self.procs = {}
        self.logs = {}
        self.ns = {}
        os.makedirs(logdir, exist_ok=True)
        up = subprocess.run([TOPOLOGY, "up", name], capture_output=True, text=True)
        if up.returncode != 0:
            subprocess.run([TOPOLOGY, "down", name], capture_output=True)
            raise RuntimeError("topology up: " + up.stderr.strip())
        try:
            self.ns = {role: Netns("rs-%s-%s" % (name, role), workers) for role, workers in (("c", 4), ("r", 2))}
            if nat:
                out = subprocess.run([NAT, "on", name], capture_output=True, text=True)
                if out.returncode != 0:
                    raise RuntimeError("nat on: " + out.stderr.strip())
            extra = ["--handover", handover] if handover else []
            for role in ("s", "s2"):
                self.start("server_" + role, role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", SERVER[role],
                                                    "--control", CONTROL[role]] + pool.server_args(role) + extra +
                           ["echo"])
            for role in ("s", "s2"):
                self.wait_log("server_" + role, "interface up")
            self.start("client", "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", CLIENT_ADDR] + extra +
                       ["-L", "127.0.0.1:%d:%s:7000" % (FORWARD["s"], SERVER["s"]),
                        "-L", "127.0.0.1:%d:%s:7000" % (FORWARD["s2"], SERVER["s2"])])
            self.wait_log("client", "[app] forwarding", count=2)
        except BaseException:
            self.close()
            raise

    def start(self, label, role, argv):
        path = os.path.join(self.logdir, label + ".log")
        self.logs[label] = path
        out = open(path, "w")
        # `ip netns exec` execs the binary, so the pid is the binary's own. A session of its
        # own keeps a terminal's Ctrl-C from it: close() stops it (SIGTERM), else topology down.
        self.procs[label] = subprocess.Popen(["ip", "netns", "exec", "rs-%s-%s" % (self.name, role)] + argv,
                                             stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()

    def log_text(self, label):
        with open(self.logs[label], errors="replace") as f:
            return f.read()

    def wait_log(self, label, needle, seconds=15, count=1):
        deadline = mono() + seconds
        while mono() < deadline:
            if self.log_text(label).count(needle) >= count:
                return
            if self.procs[label].poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("%s never logged %r; its log (%s) ends:\n%s" % (
            label, needle, self.logs[label], self.log_text(label)[-1500:]))

    def connect(self, port, timeout=10):
        """A kernel TCP connection from namespace c to a forward of the client."""
        def make():
            s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return s
        return self.ns["c"].call(make)

    def migrate(self, source="s", target="s2", timeout=60):
        """Moves source's sessions to target by speaking the control protocol from r (what
        `roamctl migrate --from source --to target` sends, without starting a process).
        The control connection is opened first; t0 is taken right before the migrate_request
        is written to it, t1 when the reply frame is in. Returns (t0, t1, the reply)."""
        def run():
            control = ControlConnection(CONTROL[source], self.pool.operator_key, timeout)
            try:
                return control.request(FRAME_MIGRATE_REQUEST, "to=" + CONTROL[target], timeout)
            finally:
                control.close()
        try:
            t0, t1, reply = self.ns["r"].call(run)
        except OSError as e:
            raise Failed("migrate request to %s: %s" % (CONTROL[source], e))
        if not reply.startswith("ok moved"):
            raise Failed("migrate request to %s: %s" % (CONTROL[source], reply))
        return t0, t1, reply

    def status(self, role):
        # roamctl authenticates with $ROAMCTL_KEY, the pool's operator key (lab_pool).
        out = self.ns["r"].call(subprocess.run, [ROAMCTL, "status", "--server", CONTROL[role]], capture_output=True,
                                text=True, timeout=30)
        try:
            return json.loads(out.stdout) if out.returncode == 0 else {}
        except ValueError:
            return {}

    def wait_registered(self, role, count, seconds=30):
        """Until the client named `count` connections to the server over its control channel:
        a move before that would find no channel to announce it on."""
        deadline = mono() + seconds
        while True:
            got = self.status(role).get("registrations", 0)
            if got >= count:
                return
            if mono() > deadline:
                raise Failed("server %s has %d of %d registrations after %d s" % (role, got, count, seconds))
            time.sleep(0.1)

    def counters(self):
        out = subprocess.run([NAT, "counters", self.name], capture_output=True, text=True)
        words = out.stdout.split()
        return dict(zip(words[0::2], map(int, words[1::2])))

    def tun_drops(self):
        """Packets the kernel dropped on the way to each roam process: rtun0's TX dropped
        (its queue, txqueuelen packets, was full while the process was busy)."""
        drops = {}
        for role in ("c", "s", "s2"):
            out = subprocess.run(["ip", "-n", "rs-%s-%s" % (self.name, role), "-s", "-j", "link", "show", "rtun0"],
                                 capture_output=True, text=True)
            try:
                drops[role] = json.loads(out.stdout)[0]["stats64"]["tx"]["dropped"]
            except (ValueError, IndexError, KeyError):
                drops[role] = 0
        return drops

    def client_lines(self, pattern, count=1, seconds=3):
        """Matches of `pattern` in the client's log, waiting up to `seconds` for `count`."""
        deadline = mono() + seconds
        while True:
            found = pattern.findall(self.log_text("client"))
            if len(found) >= count or mono() > deadline:
                return found
            time.sleep(0.05)

    def close(self):
        for label, p in self.procs.items():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for label, p in self.procs.items():
            try:
                rc = p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                rc = p.wait()
                note("  %s did not exit within 15 s of SIGTERM (killed)" % label)
            if rc not in (0, -signal.SIGTERM):
                note("  %s exited with status %d (log %s)" % (label, rc, self.logs[label]))
        for ns in self.ns.values():
            ns.close()
        subprocess.run([TOPOLOGY, "down", self.name], capture_output=True)


# ------------------------------------------------------------------------------ traffic

def round_payload(n):
    return struct.pack("!Q", n) * (ROUND // 8)


class EchoRounds:
    """One connection doing ROUND-byte request/response rounds in a thread; records
    (sent, replied) per round and counts replies that differ from the request."""

    def __init__(self, sock):
        self.sock = sock
        self.replies = []
        self.mismatches = 0
        self.error = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.05)  # only to notice stop(); a reply wakes recv at once
        n = 0
        try:
            while not self.stopping.is_set():
                message = round_payload(n)
                sent = mono()
                self.sock.sendall(message)
                got = b""
                while len(got) < ROUND:
                    try:
                        chunk = self.sock.recv(ROUND - len(got))
                    except socket.timeout:
                        if self.stopping.is_set():
                            return
                        continue
                    if not chunk:
                        raise OSError("connection closed by the other end")
                    got += chunk
                self.replies.append((sent, mono()))
                if got != message:
                    self.mismatches += 1
                n += 1
        except OSError as e:
            self.error = e

    def count_after(self, t):
        return sum(1 for _, replied in self.replies if replied > t)

    def stop(self):
        self.stopping.set()
        self.thread.join(5)


def wait_until(predicate, seconds):
    deadline = mono() + seconds
    while not predicate():
        if mono() > deadline:
            return False
        time.sleep(0.005)
    return True


ACM_LINE = re.compile(r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) \S+\s+\[migrate\] server \S+ moved to \S+: \d+ "
                      r"connection\(s\) follow \(ACM", re.MULTILINE)


def log_time_to_mono(hour, minute, second, millis):
    """A log timestamp (spdlog: local wall clock, milliseconds) on this process's monotonic
    clock; good to about a millisecond."""
    now_wall, now_mono = time.time(), mono()
    today = datetime.datetime.fromtimestamp(now_wall)
    stamp = today.replace(hour=hour, minute=minute, second=second, microsecond=millis * 1000).timestamp()
    if stamp - now_wall > 43200:  # logged before midnight, read after
        stamp -= 86400
    return now_mono - (now_wall - stamp)


def stalled_round(replies, t0, t1, acm_time):
    """The round caught by the move, and when it came back. Rounds run one at a time, so
    exactly one is in flight when s freezes the connection, and no round can complete from
    the freeze until the client, told by the ACM, works on the new path: the round in
    flight when the client logged the ACM (`acm_time`, log resolution 1 ms, so rounds
    overlapping [acm - 0.5 ms, acm + 1.5 ms] and the longest of them) is that round. Without
    the ACM line: the longest of the rounds sent before s answered the move (t1; the freeze
    precedes the answer) that came back after t0 -- which a scheduling pause of a loaded
    machine can beat when the move's own pause is shorter. Returns (its reply - t0, its
    duration, the longest round sent after it came back), in ms."""
    if acm_time is not None:
        caught = [(replied - sent, sent, replied) for sent, replied in replies
                  if sent <= acm_time + 0.0015 and replied >= acm_time - 0.0005]
    else:
        caught = [(replied - sent, sent, replied) for sent, replied in replies if replied > t0 and sent <= t1]
    if not caught:
        raise Failed("no echo round was in flight during the move")
    duration, _, replied = max(caught)
    later = [r - s for s, r in replies if s >= replied]
    return (replied - t0) * 1000, duration * 1000, max(later, default=0.0) * 1000


def echo_once(sock, size=ROUND, timeout=10):
    message = os.urandom(size)
    sock.settimeout(timeout)
    sock.sendall(message)
    got = b""
    while len(got) < size:
        chunk = sock.recv(size - len(got))
        if not chunk:
            raise OSError("connection closed")
        got += chunk
    return got == message


def echo_all(socks, timeout, arrivals=None):
    """Sends one byte on each socket and waits for every echo. Returns the number of wrong
    echoes (and appends each echo's arrival time to `arrivals`); raises Failed with the
    number missing after `timeout`."""
    sel = selectors.DefaultSelector()
    expected = {}
    for i, s in enumerate(socks):
        s.setblocking(False)
        expected[s] = bytes([i % 251])
        s.send(expected[s])
        sel.register(s, selectors.EVENT_READ)
    waiting, wrong = len(socks), 0
    deadline = mono() + timeout
    try:
        while waiting:
            if mono() > deadline:
                raise Failed("%d of %d echoes never came back within %.0f s" % (waiting, len(socks), timeout))
            for key, _ in sel.select(timeout=0.5):
                data = key.fileobj.recv(16)
                if not data:
                    raise Failed("a connection closed")
                wrong += data != expected[key.fileobj]
                if arrivals is not None:
                    arrivals.append(mono())
                sel.unregister(key.fileobj)
                waiting -= 1
    finally:
        sel.close()
    return wrong


def tcp_rtt_ms(lab, addr, port, count):
    """Kernel TCP handshakes from c to addr:port (connect() returns on the SYN-ACK)."""
    def run():
        samples = []
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.settimeout(5)
            t = mono()
            s.connect((addr, port))
            samples.append((mono() - t) * 1000)
            s.close()
            time.sleep(0.01)
        return samples
    return lab.ns["c"].call(run)


def _icmp_checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def icmp_rtt_ms(lab, addr, count, timeout=0.5):
    """ICMP echo from c (a raw socket; no ping binary needed). Returns the RTTs answered."""
    def run():
        s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        ident = os.getpid() & 0xFFFF
        samples = []
        try:
            for seq in range(count):
                body = struct.pack("!HH", ident, seq) + b"roamstack-rtt" * 4
                packet = struct.pack("!BBH", 8, 0, _icmp_checksum(struct.pack("!BBH", 8, 0, 0) + body)) + body
                t = mono()
                s.sendto(packet, (addr, 0))
                deadline = t + timeout
                while True:
                    left = deadline - mono()
                    if left <= 0:
                        break
                    s.settimeout(left)
                    try:
                        data, _ = s.recvfrom(2048)
                    except socket.timeout:
                        break
                    ihl = (data[0] & 0x0F) * 4
                    if len(data) >= ihl + 8 and data[ihl] == 0 and struct.unpack("!HH", data[ihl + 4:ihl + 8]) == (
                            ident, seq):
                        samples.append((mono() - t) * 1000)
                        break
                time.sleep(0.01)
        finally:
            s.close()
        return samples
    return lab.ns["c"].call(run)


# ------------------------------------------------------------------------------ measurements

class Results:
    def __init__(self):
        self.samples = {}
        self.failures = []
        self.byte_exact = True

    def add(self, key, value):
        self.samples.setdefault(key, []).append(value)

    def fail(self, what, error, lab=None):
        where = " (logs %s)" % lab.logdir if lab else ""
        self.failures.append("%s: %s" % (what, error))
        note("  FAILED %s: %s%s" % (what, error, where))


def changeover_one(lab, res, tag, timeout, reconnect=False, rtt_count=0, icmp_check=False):
    """One connection's echo rounds across a move s -> s2 (see the module doc)."""
    if rtt_count:
        rtt = tcp_rtt_ms(lab, SERVER["s2"], 7000, rtt_count)
        res.samples.setdefault("rtt_ms_" + tag + "_all", []).extend(rtt)
        note("  TCP handshake c -> %s:7000: median %.3f ms of %d" % (SERVER["s2"], statistics.median(rtt), len(rtt)))
    if icmp_check:
        icmp = icmp_rtt_ms(lab, SERVER["s2"], 3)
        note("  ICMP echo c -> %s through the NAT: %d of 3 answered (the NAT admits new flows only from TCP SYNs)"
             % (SERVER["s2"], len(icmp)))
    sock = lab.connect(FORWARD["s"])
    rounds = None
    try:
        if not echo_once(sock):
            raise Failed("wrong echo before the move")
        lab.wait_registered("s", 1)
        rounds = EchoRounds(sock)
        if not wait_until(lambda: len(rounds.replies) >= 50 or rounds.error, 10) or rounds.error:
            raise Failed("echo rounds did not start: %s" % rounds.error)
        before = rounds.replies[-50:]
        rtt_rounds = statistics.median((b - a) * 1000 for a, b in before)
        drops_before = lab.tun_drops()
        t0, t1, reply = lab.migrate()
        resumed = wait_until(lambda: rounds.count_after(t1) > 0 or rounds.error, max(0.0, t0 + timeout - mono()))
        if resumed and not rounds.error:
            time.sleep(0.5)  # rounds after the move, to see whether any other pause follows
        rounds.stop()
        report_tun_drops(lab, res, drops_before, tag + "_1")
        if rounds.error:
            raise Failed("echo rounds: %s" % rounds.error)
        if not resumed:
            raise Failed("no echo within %.0f s of the move (s answered: %s)" % (timeout, reply))
        if rounds.mismatches:
            res.byte_exact = False
            note("  %d echo rounds came back different" % rounds.mismatches)
        acm = lab.client_lines(ACM_LINE, seconds=3)
        acm_time = log_time_to_mono(*map(int, acm[-1])) if acm else None
        if acm_time is None:
            note("  no ACM line in the client's log: the caught round is taken as the slowest before s answered")
        elif not t0 - 0.002 <= acm_time <= mono():
            note("  the client's ACM line (%.1f ms after t0) is outside the move: clocks? ignored" % (
                (acm_time - t0) * 1000))
            acm_time = None
        changeover, gap, later = stalled_round(rounds.replies, t0, t1, acm_time)
        res.add("changeover_ms_" + tag + "_1", changeover)
        res.add("gap_ms_" + tag + "_1", gap)
        res.add("later_round_max_ms_" + tag + "_1", later)
        res.add("roamctl_wall_ms_" + tag + "_1", (t1 - t0) * 1000)
        res.add("round_ms_" + tag, rtt_rounds)
        reported = re.search(r" in ([0-9.]+) ms", reply)
        if reported:
            res.add("roamctl_ms_" + tag + "_1", float(reported.group(1)))
        note("  changeover %.2f ms (the caught round waited %.2f ms; client logged the ACM at %s ms; a round before "
             "the move %.3f ms, the slowest after %.3f ms); s answered %.1f ms after t0: %s" % (
                 changeover, gap, "%.1f" % ((acm_time - t0) * 1000) if acm_time else "-", rtt_rounds, later,
                 (t1 - t0) * 1000, reply))
        client_log_figures(lab, res, tag + "_1")
    except (Failed, OSError) as e:
        if rounds:
            rounds.stop()
        res.fail("changeover_ms_%s_1" % tag, e, lab)
    finally:
        sock.close()
    if reconnect:
        try:
            def run():
                t = mono()
                s = socket.create_connection(("127.0.0.1", FORWARD["s2"]), timeout=10)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                ok = echo_once(s)
                ms = (mono() - t) * 1000
                s.close()
                return ok, ms
            ok, ms = lab.ns["c"].call(run)
            if not ok:
                res.byte_exact = False
            res.add("reconnect_ms_" + tag + "_1", ms)
            note("  reconnect reference: new connection to s2 + one echo %.2f ms" % ms)
        except OSError as e:
            res.fail("reconnect_ms_%s_1" % tag, e, lab)


def report_tun_drops(lab, res, before, suffix):
    after = lab.tun_drops()
    grown = {role: after[role] - before.get(role, 0) for role in after}
    res.add("tun_drops_" + suffix, sum(grown.values()))
    if any(grown.values()):
        note("  the kernel dropped packets for a full TUN queue during the move: %s" % ", ".join(
            "%s %d" % (role, n) for role, n in grown.items() if n))


def client_log_figures(lab, res, suffix):
    """The client's own handover and changeover lines (absent before the handover build)."""
    changeover = lab.client_lines(CHANGEOVER_LINE, seconds=3)
    handover = HANDOVER_LINE.findall(lab.log_text("client"))
    if handover:
        _, answered, total, ms = handover[-1]
        res.add("handover_ms_" + suffix, float(ms))
        res.add("handover_answered_" + suffix, int(answered))
        if answered != total:
            note("  client: handover answered for only %s of %s connection(s)" % (answered, total))
    if changeover:
        res.add("client_changeover_ms_" + suffix, float(changeover[-1][2]))
    if handover or changeover:
        note("  client log: handover %s ms, changeover %s ms" % (
            handover[-1][3] if handover else "-", changeover[-1][2] if changeover else "-"))
    else:
        note("  client log: no handover/changeover line")


def changeover_many(lab, res, count, timeout):
    socks = []
    try:
        def open_all():
            out = []
            for _ in range(count):
                s = socket.create_connection(("127.0.0.1", FORWARD["s"]), timeout=30)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                out.append(s)
            return out
        t = mono()
        socks = lab.ns["c"].call(open_all)
        wrong = echo_all(socks, 120)  # established end to end (lwIP's SYN backlog makes some wait)
        note("  %d connections established in %.1f s" % (count, mono() - t))
        lab.wait_registered("s", count, 60)
        drops_before = lab.tun_drops()
        t0, t1, reply = lab.migrate()
        arrivals = []
        try:
            wrong += echo_all(socks, timeout, arrivals)
            done = mono()  # before reading the drop counters: that starts `ip` processes
        finally:
            report_tun_drops(lab, res, drops_before, "nat_%d" % count)
        changeover = (done - t0) * 1000
        # How the echoes spread: a tail far behind the median is retransmissions (lost
        # packets waiting for a retransmission timeout), not the move itself.
        after = sorted((t - t0) * 1000 for t in arrivals)
        spread = {q: after[min(len(after) - 1, int(len(after) * q / 100))] for q in (50, 90, 99)}
        for q, value in spread.items():
            res.add("echo_p%d_ms_nat_%d" % (q, count), value)
        note("  echoes back after t0: median %.1f ms, 90%% %.1f ms, 99%% %.1f ms, all %.1f ms" % (
            spread[50], spread[90], spread[99], after[-1]))
        if wrong:
            res.byte_exact = False
            note("  %d one-byte echoes came back different" % wrong)
        res.add("changeover_ms_nat_%d" % count, changeover)
        reported = re.search(r" in ([0-9.]+) ms", reply)
        if reported:
            res.add("roamctl_ms_nat_%d" % count, float(reported.group(1)))
        note("  changeover %.2f ms; s answered %.1f ms after t0: %s" % (changeover, (t1 - t0) * 1000, reply))
        client_log_figures(lab, res, "nat_%d" % count)
    except (Failed, OSError) as e:
        res.fail("changeover_ms_nat_%d" % count, e, lab)
    finally:
        for s in socks:
            s.close()


def stream_across_move(lab, res, size, timeout):
    """A pseudo-random stream of `size` bytes through one echo connection, moved s -> s2
    when a third has come back; the SHA-256 of what came back must match."""
    data = random.Random(size).randbytes(size)
    expected = hashlib.sha256(data).hexdigest()
    sock = lab.connect(FORWARD["s"])
    try:
        if not echo_once(sock):
            raise Failed("wrong echo before the stream")
        lab.wait_registered("s", 1)
        sock.settimeout(timeout)
        errors = []

        def write():
            try:
                view = memoryview(data)
                for off in range(0, size, 65536):
                    sock.sendall(view[off:off + 65536])
            except OSError as e:
                errors.append("writer: %s" % e)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        digest = hashlib.sha256()
        got = 0
        mover = None
        replies = []
        deadline = mono() + timeout
        try:
            while got < size:
                sock.settimeout(max(0.01, deadline - mono()))
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise Failed("stream closed after %d of %d bytes" % (got, size))
                digest.update(chunk)
                got += len(chunk)
                if mover is None and got >= size // 3:
                    def move():
                        try:
                            replies.append(lab.migrate()[2])
                        except Failed as e:
                            errors.append(str(e))
                    mover = threading.Thread(target=move, daemon=True)
                    mover.start()
        except socket.timeout:
            raise Failed("stream stalled at %d of %d bytes (%s)" % (got, size, "; ".join(errors + replies) or
                                                                     "no move yet"))
        writer.join(10)
        if mover:
            mover.join(60)
        if errors:
            raise Failed("; ".join(errors))
        ok = digest.hexdigest() == expected
        res.add("stream_exact", ok)
        if not ok:
            res.byte_exact = False
        note("  %d bytes across the move (%s): SHA-256 %s" % (size, replies[0] if replies else "no move",
                                                             "matches" if ok else "DIFFERS"))
    except (Failed, OSError) as e:
        res.byte_exact = False
        res.fail("byte_exact stream", e, lab)
    finally:
        sock.close()


def blocked_check(lab, res, flag):
    """With --handover off the moved connection must stay blocked by the NAT."""
    sock = lab.connect(FORWARD["s"])
    try:
        if not echo_once(sock):
            raise Failed("wrong echo before the move")
        lab.wait_registered("s", 1)
        before = lab.counters()
        _, _, reply = lab.migrate()
        lab.wait_log("client", "connection(s) follow (ACM")
        try:
            answered = echo_once(sock, timeout=3)
            answered = True
        except socket.timeout:
            answered = False
        after = lab.counters()
        dropped = {k: after.get(k, 0) - before.get(k, 0) for k in ("invalid", "blocked", "admitted")}
        blocked = not answered and dropped["invalid"] + dropped["blocked"] > 0
        note("  %s; echo after the move: %s; NAT counters grew by invalid %d, blocked %d (admitted %d)%s" % (
            reply, "ANSWERED" if answered else "none within 3 s", dropped["invalid"], dropped["blocked"],
            dropped["admitted"], "" if flag else " [build without --handover: its default behaviour]"))
        return blocked, dropped
    except (Failed, OSError, RuntimeError) as e:
        res.fail("blocked_without_handover", e, lab)
        return None, None
    finally:
        sock.close()


# ------------------------------------------------------------------------------ main

def median_or_none(values):
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every figure (default 3)")
    parser.add_argument("--connections", type=int, default=1000,
                        help="connections moved at once for changeover_ms_nat_N (default 1000)")
    parser.add_argument("--stream-mib", type=int, default=4, help="MiB streamed across a move per rep (default 4)")
    parser.add_argument("--timeout", type=float, default=10,
                        help="seconds a moved connection may take to answer before the sample fails (default 10)")
    parser.add_argument("--only", default="blocked,nat1,direct1,nat_n,stream",
                        help="comma-separated parts to run (default all: blocked,nat1,direct1,nat_n,stream)")
    parser.add_argument("--lab", default="ho%04d" % (os.getpid() % 10000), help="lab name (1-6 of [a-z0-9])")
    parser.add_argument("--keep-logs", action="store_true", help="keep the process logs even when all went well")
    args = parser.parse_args()
    use_debian_python()  # after --help, which needs no dissononce
    parts = set(args.only.split(","))
    unknown = parts - {"blocked", "nat1", "direct1", "nat_n", "stream"}
    if unknown or args.reps < 1 or args.connections < 1 or not re.fullmatch(r"[a-z0-9]{1,6}", args.lab):
        parser.error("bad --only %s / --reps / --connections / --lab" % ",".join(sorted(unknown)))
    if os.geteuid() != 0:
        print("handover: needs root (network namespaces, TUN devices, the NAT); skipped", file=sys.stderr)
        return 77
    for binary in (ROAM_SERVER, ROAM_CLIENT, ROAMCTL):
        if not os.access(binary, os.X_OK):
            print("handover: %s not found (set ROAM_SERVER/ROAM_CLIENT/ROAMCTL or use tools/bench/run)" % binary,
                  file=sys.stderr)
            return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.connections + 256))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * args.connections + 64:
        note("warning: RLIMIT_NOFILE %d is low for %d connections" % (want, args.connections))
    # SIGTERM unwinds like Ctrl-C, so every lab is torn down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    flag = supports_handover_flag()
    load = os.getloadavg()[0]
    if load > 0.5:
        note("warning: load average %.2f before the run: other work shares the CPUs, figures will be noisier" % load)
    note("binaries: %s %s %s; --handover flag: %s" % (ROAM_SERVER, ROAM_CLIENT, ROAMCTL, "yes" if flag else "no"))
    workdir = tempfile.mkdtemp(prefix="roam-bench-handover-")
    note("lab %s; logs in %s" % (args.lab, workdir))
    res = Results()
    blocked, blocked_drops = None, None
    try:
        pool = lab_pool(ROAMCTL, os.path.join(workdir, "keys"))
    except (RuntimeError, OSError) as e:
        note("lab pool: %s" % e)
        return 1

    def in_lab(tag, nat, handover, fn):
        lab = None
        try:
            lab = Lab(args.lab, os.path.join(workdir, tag), nat, pool, handover)
            return fn(lab)
        except (RuntimeError, Failed, OSError) as e:
            res.fail(tag, e, lab)
        finally:
            if lab:
                lab.close()

    try:
        if "blocked" in parts:
            note("blocked without handover: NAT on, %s" % ("--handover off" if flag else "no --handover flag in "
                                                                                        "this build"))
            got = in_lab("blocked", True, "off" if flag else None, lambda lab: blocked_check(lab, res, flag))
            if got:
                blocked, blocked_drops = got
        for rep in range(1, args.reps + 1):
            if "nat1" in parts:
                note("rep %d/%d: one connection moved s -> s2 through the strict NAT" % (rep, args.reps))
                in_lab("%d-nat1" % rep, True, None,
                       lambda lab: changeover_one(lab, res, "nat", args.timeout, reconnect=True, rtt_count=20,
                                                  icmp_check=rep == 1))
            if "direct1" in parts:
                note("rep %d/%d: one connection moved s -> s2, no NAT" % (rep, args.reps))
                in_lab("%d-direct1" % rep, False, None,
                       lambda lab: changeover_one(lab, res, "direct", args.timeout, reconnect=True))
            if "nat_n" in parts:
                note("rep %d/%d: %d connections moved s -> s2 through the strict NAT" % (rep, args.reps,
                                                                                         args.connections))
                in_lab("%d-nat%d" % (rep, args.connections), True, None,
                       lambda lab: changeover_many(lab, res, args.connections, max(args.timeout, 30)))
            if "stream" in parts:
                note("rep %d/%d: %d MiB stream moved s -> s2 through the strict NAT" % (rep, args.reps,
                                                                                        args.stream_mib))
                in_lab("%d-stream" % rep, True, None,
                       lambda lab: stream_across_move(lab, res, args.stream_mib << 20, max(args.timeout, 30)))
    except (KeyboardInterrupt, SystemExit) as e:
        note("interrupted; lab %s torn down, logs in %s" % (args.lab, workdir))
        return 130 if isinstance(e, KeyboardInterrupt) else e.code

    s = res.samples
    if "rtt_ms_nat_all" in s:
        s["rtt_ms_nat"] = [statistics.median(s["rtt_ms_nat_all"])]
    # Every stream that crossed a move: the rounds and one-byte echoes (res.byte_exact) and,
    # when that part ran, each stream's SHA-256 (a stream that never finished is not exact).
    byte_exact = res.byte_exact and ("stream" not in parts or bool(s.get("stream_exact")))
    med = {k: median_or_none(v) for k, v in s.items() if not k.endswith("_all") and k != "stream_exact"}
    out = {"bench": "handover", "reps": args.reps, "connections": args.connections, "stream_mib": args.stream_mib,
           "handover_flag": flag, "byte_exact": byte_exact,
           "blocked_without_handover": blocked}
    if blocked_drops:
        out["blocked_nat_drops"] = blocked_drops
    n = args.connections
    for key in ("changeover_ms_nat_1", "changeover_ms_nat_%d" % n, "changeover_ms_direct_1", "reconnect_ms_nat_1",
                "handover_ms_nat_1", "client_changeover_ms_nat_1", "rtt_ms_nat"):
        out[key] = med.get(key)
    if out["rtt_ms_nat"] is not None:
        out["goal_ms_1"] = round(1.5 * out["rtt_ms_nat"] + 5, 3)
    out["paper_changeover_ms"] = PAPER_CHANGEOVER_MS
    # t0 of every move: the migrate_request written on an open control connection (older
    # results took it before a roamctl process started and carried roamctl_exec_ms).
    out["t0"] = "migrate_request_write"
    out["loadavg"] = round(load, 2)
    if out["changeover_ms_nat_1"] is not None and out["reconnect_ms_nat_1"]:
        out["ratio_changeover_vs_reconnect_nat_1"] = round(out["changeover_ms_nat_1"] / out["reconnect_ms_nat_1"], 3)
    if out["changeover_ms_nat_1"] is not None and "goal_ms_1" in out:
        out["goal_met_1"] = out["changeover_ms_nat_1"] <= out["goal_ms_1"]
        # changeover counts from the migrate_request's write; the caught round's wait is the
        # pause the application itself saw.
        out["goal_met_gap_1"] = med["gap_ms_nat_1"] <= out["goal_ms_1"]
    for key, value in sorted(med.items()):
        out.setdefault(key, value)
    out["errors"] = len(res.failures)
    out["samples"] = {k: [round(x, 3) if isinstance(x, float) else x for x in v] for k, v in sorted(s.items())
                      if k != "rtt_ms_nat"}
    ok = out["byte_exact"] and blocked is not False and not res.failures
    if "blocked" in parts and blocked is None:
        ok = False

    print("handover: median over %d reps (ms); samples in the JSON" % args.reps)
    for key in ("changeover_ms_nat_1", "gap_ms_nat_1", "reconnect_ms_nat_1", "handover_ms_nat_1",
                "client_changeover_ms_nat_1", "changeover_ms_direct_1", "changeover_ms_nat_%d" % n, "rtt_ms_nat",
                "goal_ms_1", "paper_changeover_ms"):
        value = out.get(key)
        print("  %-28s %10s" % (key, "%.3f" % value if value is not None else "-"))
    print("  %-28s %10s" % ("byte_exact", out["byte_exact"]))
    print("  %-28s %10s" % ("blocked_without_handover", blocked))
    for failure in res.failures:
        print("  failed: %s" % failure)
    if ok and not args.keep_logs:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        note("logs kept in %s" % workdir)
    print(json.dumps(out, separators=(",", ":")))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
