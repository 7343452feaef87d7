"""Shared helpers for the Roamstack integration tests (Python 3 standard library only).

What it does for a test:
  * picks free UDP/TCP ports on 127.0.0.1 (bind port 0; never hands out the same port twice);
  * starts roam-server / roam-client with stderr captured to a file per process;
  * waits until the server logs that it serves and the client's -L port accepts a TCP
    connect (polled, with a timeout);
  * ALWAYS stops and reaps every process it started: `Pair` is a context manager, and an
    atexit hook (also reached on SIGTERM/SIGINT/SIGHUP of the test itself) cleans up the rest.
    Stopping sends SIGTERM (or the signal a test asks for), waits, and SIGKILLs after a
    timeout. A process that needed SIGKILL, exited non-zero (ASan/UBSan reports make the exit
    code non-zero), left a sanitizer report in its log, or did not print the final counters
    line fails the test.

Binaries come from $ROAM_SERVER, $ROAM_CLIENT and $ROAMCTL (set by CTest); when unset, the
build/apps directory next to this source tree is used, for running a script by hand.

Moves between servers: `TwoServers` starts servers A and B (each with a --control port)
and a client whose forwards target A; `roamctl()` runs roamctl and returns its outcome.

No timing assertions anywhere: the timeouts below only keep a broken build from hanging.
"""
import atexit
import collections
import ctypes
import hashlib
import ipaddress
import json
import os
import random
import re
import select
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

_SOURCE_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ROAM_SERVER = os.environ.get("ROAM_SERVER") or os.path.join(_SOURCE_ROOT, "build", "apps", "roam-server")
ROAM_CLIENT = os.environ.get("ROAM_CLIENT") or os.path.join(_SOURCE_ROOT, "build", "apps", "roam-client")
# roamctl: $ROAMCTL, else the one next to roam-server.
ROAMCTL = os.environ.get("ROAMCTL") or os.path.join(os.path.dirname(ROAM_SERVER), "roamctl")

# Generous limits, only there to turn a hang into a failure (sanitizer builds are slow).
READY_TIMEOUT = 60.0       # process start until it listens
STOP_TIMEOUT = 60.0        # signal until exit; SIGKILL after this (and the test fails)
IO_TIMEOUT = 120.0         # any single data transfer phase

SERVER_ADDR = "198.18.12.2"
CLIENT_ADDR = "198.18.11.2"
SERVER_NET = "198.18.12.0/24"
CLIENT_NET = "198.18.11.0/24"
# The second server of a move topology (TwoServers); its own /24 so routes tell A and B apart.
SERVER_B_ADDR = "198.18.13.2"
SERVER_B_NET = "198.18.13.0/24"

COUNTERS_RE = re.compile(
    r"\[node\] packets in (\d+) \(malformed (\d+), filtered (\d+)\), out (\d+); "
    r"link rx dropped (\d+), tx dropped (\d+), rx foreign (\d+)")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "SUMMARY: UndefinedBehaviorSanitizer", "terminate called", "Segmentation fault")

# rx_foreign: datagrams from a sender the UDP link does not accept (also in rx_dropped).
Counters = collections.namedtuple("Counters", "packets_in malformed filtered out rx_dropped tx_dropped rx_foreign")


class TestFailure(Exception):
    """An assertion about the apps failed; the message says what."""


def check(condition, message):
    if not condition:
        raise TestFailure(message)


def log(*args):
    print(*args, flush=True)


# ---------------------------------------------------------------- ports

_issued_ports = set()
_issued_lock = threading.Lock()


def free_port(kind=socket.SOCK_STREAM):
    """A port on 127.0.0.1 that was free a moment ago (bind port 0), never one handed out before."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        with _issued_lock:
            if port not in _issued_ports:
                _issued_ports.add(port)
                return port
    raise RuntimeError("could not find a fresh free port")


def free_udp_port():
    return free_port(socket.SOCK_DGRAM)


def free_tcp_port():
    return free_port(socket.SOCK_STREAM)


# ---------------------------------------------------------------- processes

_all_processes = []
_log_dir = None
_failed = False


def log_dir():
    global _log_dir
    if _log_dir is None:
        name = os.path.splitext(os.path.basename(sys.argv[0] or "roam"))[0]
        _log_dir = tempfile.mkdtemp(prefix="roam-it-%s-" % name)
    return _log_dir


_lab_pool = None


def lab_pool():
    """The test's pool (tools/lab_keys.py): keys and certificates for servers by name and an
    operator key, which every roamctl this process runs uses ($ROAMCTL_KEY)."""
    global _lab_pool
    if _lab_pool is None:
        sys.path.insert(0, os.path.join(_SOURCE_ROOT, "tools"))
        from lab_keys import LabPool
        _lab_pool = LabPool(ROAMCTL, os.path.join(log_dir(), "keys"))
        os.environ["ROAMCTL_KEY"] = _lab_pool.operator_key
    return _lab_pool


try:
    # Looked up here, in the parent: between fork and exec only the call itself runs (no
    # dlopen in a child forked from a threaded process).
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent():
    # Runs in the child between fork and exec: if the test process dies (even by SIGKILL),
    # the kernel kills the app too, so nothing is ever orphaned.
    if _prctl is not None:
        _prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG


class StopResult:
    def __init__(self, returncode, killed, counters, seconds):
        self.returncode = returncode
        self.killed = killed
        self.counters = counters
        self.seconds = seconds


class RoamProcess:
    """One roam-server or roam-client subprocess, stderr in a log file."""

    _serial = 0

    def __init__(self, role, argv, name=None):
        assert threading.current_thread() is threading.main_thread(), \
            "start processes from the main thread (PR_SET_PDEATHSIG follows the starting thread)"
        RoamProcess._serial += 1
        self.role = role
        self.name = name or "%s-%d" % (role, RoamProcess._serial)
        self.argv = list(argv)
        self.log_path = os.path.join(log_dir(), self.name + ".log")
        self.stdout_path = os.path.join(log_dir(), self.name + ".out")
        self.result = None          # StopResult once stopped
        self.signalled_at = None
        with open(self.log_path, "wb") as err, open(self.stdout_path, "wb") as out:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                          preexec_fn=_die_with_parent, close_fds=True)
        self.pid = self.popen.pid
        _all_processes.append(self)

    def alive(self):
        return self.popen.poll() is None

    def stderr_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def tail(self, lines=25):
        text = self.stderr_text().splitlines()
        return "\n".join("    | " + line for line in text[-lines:])

    def describe(self):
        return "%s (pid %d): %s\n  log %s" % (self.name, self.pid, " ".join(self.argv), self.log_path)

    def wait_for_log(self, needle, timeout=READY_TIMEOUT, count=1):
        """Waits until stderr holds `needle` `count` times; False if the process died or time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stderr_text().count(needle) >= count:
                return True
            if not self.alive():
                return self.stderr_text().count(needle) >= count
            time.sleep(0.02)
        return False

    def exit_status(self):
        code = self.popen.poll()
        if code is None:
            return "still running, no readiness line within the timeout"
        if code < 0:
            return "killed by signal %d (%s) before it was ready" % (-code, signal.Signals(-code).name)
        return "exited with code %d" % code

    def send_signal(self, sig):
        self.signalled_at = time.monotonic()
        if self.alive():
            self.popen.send_signal(sig)

    def _reap(self, sig, timeout):
        """Signals (unless sig is None), waits up to `timeout`, SIGKILLs after that.
        Returns StopResult (no checks). `seconds` counts from the signal when sent here."""
        if self.result is not None:
            return self.result
        started = time.monotonic() if sig is not None else (self.signalled_at or time.monotonic())
        killed = False
        if sig is not None and self.alive():
            try:
                self.popen.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            killed = True
            self.popen.kill()
            self.popen.wait()
        seconds = time.monotonic() - started
        counters = parse_counters(self.stderr_text())
        self.result = StopResult(self.popen.returncode, killed, counters, seconds)
        return self.result

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT, check_exit=True):
        """Stops the process (idempotent) and checks it shut down cleanly. Returns StopResult.
        sig=None: the signal was already sent (send_signal); only wait, SIGKILL on timeout."""
        result = self._reap(sig, timeout)
        if check_exit:
            self.check_clean_exit()
        return result

    def check_clean_exit(self):
        result = self.result
        assert result is not None
        problems = []
        if result.killed:
            problems.append("did not exit within %.0f s of the signal and needed SIGKILL" % STOP_TIMEOUT)
        elif result.returncode != 0:
            if result.returncode < 0:
                problems.append("died of signal %d" % -result.returncode)
            else:
                problems.append("exit code %d (expected 0)" % result.returncode)
        text = self.stderr_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                problems.append("stderr contains %r" % marker)
        if result.counters is None and not result.killed:
            problems.append("no final counters line ('[node] packets in ...') on stderr")
        if problems:
            raise TestFailure("%s: %s\n  %s\n%s" % (self.name, "; ".join(problems), self.describe(), self.tail()))



def metric_value(address, name):
    """One sample of a Prometheus text page (`--metrics ADDRESS`): NAME's value as an int,
    or None when the page has no such line."""
    with urllib.request.urlopen("http://%s/metrics" % address, timeout=20) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " "):
                return int(float(line.split()[1]))
    return None


def wait_until(what, predicate, timeout=READY_TIMEOUT):
    """Polls predicate() every 50 ms; TestFailure naming WHAT after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TestFailure("timed out waiting for " + what)
        time.sleep(0.05)

def parse_counters(text):
    matches = COUNTERS_RE.findall(text)
    if not matches:
        return None
    return Counters(*(int(v) for v in matches[-1]))


def pid_gone(pid):
    """True when no process (not even a zombie) has this pid any more."""
    return not os.path.exists("/proc/%d" % pid)


def _cleanup_at_exit():
    # Safety net: anything a test forgot (or left behind by failing) is stopped and reaped.
    leftovers = [p for p in _all_processes if p.result is None]
    for p in leftovers:
        p._reap(signal.SIGTERM, 15.0)
        if p.result.killed or p.result.returncode != 0:
            sys.stderr.write("harness: cleanup: %s exited %s%s\n" % (
                p.name, p.result.returncode, " after SIGKILL" if p.result.killed else ""))


atexit.register(_cleanup_at_exit)


def _exit_on_signal(signum, _frame):
    # Turn CTest's (or a user's) SIGTERM/SIGINT into a normal exit so atexit cleanup runs.
    raise SystemExit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(_sig, _exit_on_signal)


# ---------------------------------------------------------------- a server + client pair

def _bind_failed(proc):
    text = proc.stderr_text()
    return (not proc.alive()) and proc.popen.returncode == 2 and (
        "Address already in use" in text or "cannot bind" in text or "cannot listen" in text)


class _Topology:
    """What Pair and TwoServers share as context managers: start() on entry (if it fails,
    every process started so far is reaped), stop_all() on exit. A failure already on its
    way out is not hidden by shutdown problems, which are logged instead. Subclasses
    provide start(), stop_all() and _processes()."""

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            for proc in self._processes():
                proc.stop(check_exit=False)
            raise

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop_all()
            return False
        try:
            self.stop_all()
        except TestFailure as e:
            log("(also, while cleaning up after the failure:)\n" + str(e))
        return False


class Pair(_Topology):
    """A roam-server and a roam-client joined by UDP links on loopback.

        with Pair(mode="echo") as pair:
            sock = pair.connect()
            ...
            pair.stop_all()         # optional: checked stop (also done on leaving the block)

    mode: "echo" | "discard" | "relay" (then backend="IP:PORT").
    forwards: how many -L forwards the client gets (all to SERVER_ADDR:listen).
    """

    def __init__(self, mode="echo", backend=None, forwards=1, server_extra=(), client_extra=(),
                 listen=None, probe=True):
        self.mode = mode
        self.backend = backend
        self.forward_count = forwards
        self.server_extra = list(server_extra)
        self.client_extra = list(client_extra)
        self.listen = listen
        self.probe = probe
        self.server = None
        self.client = None
        self.forward_ports = []
        self.server_udp = None
        self.client_udp = None

    @property
    def forward_port(self):
        return self.forward_ports[0]

    @property
    def sport(self):
        return self.listen or 7000

    def server_argv(self):
        argv = [ROAM_SERVER, "--link", "udp:127.0.0.1:%d" % self.server_udp, "--addr", SERVER_ADDR,
                "--route", "%s=127.0.0.1:%d" % (CLIENT_NET, self.client_udp)]
        if self.listen:
            argv += ["--listen", str(self.listen)]
        argv += self.server_extra + [self.mode]
        if self.backend:
            argv += ["--backend", self.backend]
        return argv

    def client_argv(self):
        argv = [ROAM_CLIENT, "--link", "udp:127.0.0.1:%d" % self.client_udp, "--addr", CLIENT_ADDR,
                "--route", "%s=127.0.0.1:%d" % (SERVER_NET, self.server_udp)]
        for port in self.forward_ports:
            argv += ["-L", "127.0.0.1:%d:%s:%d" % (port, SERVER_ADDR, self.sport)]
        return argv + self.client_extra

    def start(self):
        for attempt in range(5):
            self.server_udp, self.client_udp = free_udp_port(), free_udp_port()
            self.forward_ports = [free_tcp_port() for _ in range(self.forward_count)]
            self.server = RoamProcess("server", self.server_argv())
            if not self.server.wait_for_log("[app] serving "):
                if _bind_failed(self.server):  # a port was taken between probe and bind: retry
                    self.server.stop(check_exit=False)
                    continue
                raise TestFailure("roam-server did not start (%s)\n  %s\n%s" % (
                    self.server.exit_status(), self.server.describe(), self.server.tail()))
            self.client = RoamProcess("client", self.client_argv())
            if not self.client.wait_for_log("[app] forwarding ", count=self.forward_count):
                if _bind_failed(self.client):
                    self.client.stop(check_exit=False)
                    self.server.stop()
                    continue
                raise TestFailure("roam-client did not start (%s)\n  %s\n%s" % (
                    self.client.exit_status(), self.client.describe(), self.client.tail()))
            if self.probe:
                for port in self.forward_ports:
                    wait_for_tcp(port, READY_TIMEOUT, self.client)
            return self
        raise TestFailure("could not find free ports after 5 attempts")

    def connect(self, index=0, timeout=IO_TIMEOUT):
        sock = socket.create_connection(("127.0.0.1", self.forward_ports[index]), timeout=timeout)
        sock.settimeout(timeout)
        return sock

    def stop_client(self, sig=signal.SIGTERM):
        return self.client.stop(sig)

    def stop_server(self, sig=signal.SIGTERM):
        return self.server.stop(sig)

    def stop_all(self):
        """Stops the client, then the server; checks both. Returns (client, server) StopResults."""
        errors = []
        results = []
        for proc in (self.client, self.server):
            if proc is None:
                results.append(None)
                continue
            try:
                results.append(proc.stop())
            except TestFailure as e:
                errors.append(str(e))
                results.append(proc.result)
        if errors:
            raise TestFailure("\n".join(errors))
        return tuple(results)

    def _processes(self):
        return [p for p in (self.client, self.server) if p is not None]


def wait_for_tcp(port, timeout=READY_TIMEOUT, proc=None):
    """Polls until 127.0.0.1:port accepts a TCP connect."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise TestFailure("%s exited (code %s) before port %d accepted\n  %s\n%s" % (
                proc.name, proc.popen.returncode, port, proc.describe(), proc.tail()))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise TestFailure("port %d never accepted a TCP connect within %.0f s (%s)" % (port, timeout, last))


# ---------------------------------------------------------------- roamctl and two servers

RoamctlResult = collections.namedtuple("RoamctlResult", "returncode stdout stderr seconds")
# The summary may end with what did not move: " (2 stayed: 1 relay, 1 ending)".
MOVED_RE = re.compile(r"^ok moved (\d+) of (\d+) sessions to (\S+) in ([0-9.]+) ms(?: \((.+)\))?$")


def roamctl(*args, timeout=IO_TIMEOUT):
    """Runs `roamctl ARGS...` to completion. Returns RoamctlResult (stdout/stderr as text,
    seconds as wall time, information only). A roamctl that does not exit within `timeout`
    is killed and fails the test."""
    if not os.access(ROAMCTL, os.X_OK):
        raise TestFailure("roamctl not found or not executable: %s (set $ROAMCTL)" % ROAMCTL)
    argv = [ROAMCTL] + [str(a) for a in args]
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                              preexec_fn=_die_with_parent)
    except subprocess.TimeoutExpired:  # subprocess.run kills and reaps it
        raise TestFailure("roamctl did not exit within %.0f s: %s" % (timeout, " ".join(argv)))
    return RoamctlResult(proc.returncode, proc.stdout.decode("utf-8", "replace"),
                         proc.stderr.decode("utf-8", "replace"), time.monotonic() - started)


def parse_moved(line):
    """"ok moved M of N sessions to ADDR in T ms[ (NOTE)]" -> (M, N, ADDR, T) or None."""
    m = MOVED_RE.match(line.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), m.group(3), float(m.group(4))


def moved_note(line):
    """What a summary says in parentheses about the sessions that did not move
    ("1 stayed: 1 relay"), "" when nothing, None when the line is no "ok moved" summary."""
    m = MOVED_RE.match(line.strip())
    if not m:
        return None
    return m.group(5) or ""


class TwoServers(_Topology):
    """Servers A and B running the same mode, each with its own --control port on
    127.0.0.1, and one roam-client whose -L forwards all target A:

        client 198.18.11.2: routes 198.18.12.0/24 -> A's UDP port, 198.18.13.0/24 -> B's
        A 198.18.12.2, B 198.18.13.2: route 198.18.11.0/24 -> the client's UDP port

        with TwoServers(mode="files", mode_args=["--root", d]) as t:
            sock = t.connect()
            moved, total, address, ms = t.migrate("A", "B", expect_moved=1)  # checked "ok moved 1 of 1"
            t.status("B")["sessions_imported"]

    routes: optional callable({"client": port, "A": port, "B": port}) returning the UDP
    ports each route should point at instead (same keys): how a test puts a relay (a lossy
    proxy) between the nodes. It is called again when start() retries with new ports.
    """

    NAMES = ("A", "B")
    address = {"A": SERVER_ADDR, "B": SERVER_B_ADDR}
    net = {"A": SERVER_NET, "B": SERVER_B_NET}

    address6 = {"A": "2001:db8:12::2", "B": "2001:db8:13::2"}
    net6 = {"A": "2001:db8:12::/48", "B": "2001:db8:13::/48"}

    def __init__(self, mode="echo", mode_args=(), forwards=1, server_extra=(), client_extra=(), routes=None,
                 probe=True, ipv6=False, argv_hook=None):
        """ipv6=True: every node also gets an IPv6 address (client 2001:db8:11::2, A
        2001:db8:12::2, B 2001:db8:13::2) and the forwards target A's IPv6 address.
        argv_hook: optional callable("A"|"B"|"client", argv) returning the argv to run
        instead (config_file_test.py moves the options into config files)."""
        self.argv_hook = argv_hook or (lambda _name, argv: argv)
        self.ipv6 = ipv6
        self.mode = mode
        self.mode_args = list(mode_args)
        self.forward_count = forwards
        self.server_extra = list(server_extra)
        self.client_extra = list(client_extra)
        self.routes = routes
        self.probe = probe
        self.servers = {}          # "A"/"B" -> RoamProcess
        self.client = None
        self.udp = {}              # "A"/"B"/"client" -> the node's own UDP link port
        self.controls = {}         # "A"/"B" -> "127.0.0.1:PORT"
        self.last_summary = None   # the last line migrate() checked
        self.forward_ports = []

    @property
    def forward_port(self):
        return self.forward_ports[0]

    def _processes(self):
        return [p for p in [self.client] + [self.servers.get(n) for n in self.NAMES] if p is not None]

    def start(self):
        for attempt in range(5):
            self.udp = {"A": free_udp_port(), "B": free_udp_port(), "client": free_udp_port()}
            self.controls = {n: "127.0.0.1:%d" % free_tcp_port() for n in self.NAMES}
            self.forward_ports = [free_tcp_port() for _ in range(self.forward_count)]
            target = dict(self.udp) if self.routes is None else self.routes(dict(self.udp))
            self.servers = {}
            self.client = None
            retry = False
            for name in self.NAMES:
                argv = [ROAM_SERVER, "--link", "udp:127.0.0.1:%d" % self.udp[name], "--addr", self.address[name],
                        "--route", "%s=127.0.0.1:%d" % (CLIENT_NET, target["client"]),
                        "--control", self.controls[name]] + lab_pool().server_args(name) + self.server_extra + \
                    [self.mode] + self.mode_args
                if self.ipv6:
                    argv[5:5] = ["--addr6", self.address6[name], "--route",
                                 "2001:db8:11::/48=127.0.0.1:%d" % target["client"]]
                proc = RoamProcess("server", self.argv_hook(name, argv),
                                   name="server-%s-%d" % (name, RoamProcess._serial + 1))
                self.servers[name] = proc
                if not proc.wait_for_log("[app] serving "):
                    if _bind_failed(proc):
                        retry = True
                        break
                    raise TestFailure("roam-server %s did not start (%s)\n  %s\n%s" % (
                        name, proc.exit_status(), proc.describe(), proc.tail()))
            if not retry:
                argv = [ROAM_CLIENT, "--link", "udp:127.0.0.1:%d" % self.udp["client"], "--addr", CLIENT_ADDR]
                for name in self.NAMES:
                    argv += ["--route", "%s=127.0.0.1:%d" % (self.net[name], target[name])]
                    if self.ipv6:
                        argv += ["--route", "%s=127.0.0.1:%d" % (self.net6[name], target[name])]
                if self.ipv6:
                    argv += ["--addr6", "2001:db8:11::2"]
                for port in self.forward_ports:
                    server = "[%s]" % self.address6["A"] if self.ipv6 else SERVER_ADDR
                    argv += ["-L", "127.0.0.1:%d:%s:7000" % (port, server)]
                self.client = RoamProcess("client", self.argv_hook("client", argv + self.client_extra))
                if not self.client.wait_for_log("[app] forwarding ", count=self.forward_count):
                    if not _bind_failed(self.client):
                        raise TestFailure("roam-client did not start (%s)\n  %s\n%s" % (
                            self.client.exit_status(), self.client.describe(), self.client.tail()))
                    retry = True
            if retry:
                for proc in self._processes():
                    proc.stop(check_exit=not _bind_failed(proc))
                continue
            if self.probe:
                for port in self.forward_ports:
                    wait_for_tcp(port, READY_TIMEOUT, self.client)
                # The probe's session must be gone from A before a test counts moved sessions.
                self.wait_for_sessions("A", 0)
            return self
        raise TestFailure("could not find free ports after 5 attempts")

    def connect(self, index=0, timeout=IO_TIMEOUT):
        sock = socket.create_connection(("127.0.0.1", self.forward_ports[index]), timeout=timeout)
        sock.settimeout(timeout)
        return sock

    def migrate_raw(self, source, destination, count=None, timeout=IO_TIMEOUT):
        """roamctl migrate --from SOURCE's control --to DESTINATION's control; unchecked."""
        args = ["migrate", "--from", self.controls[source], "--to", self.controls[destination]]
        if count is not None:
            args += ["--count", count]
        return roamctl(*args, timeout=timeout)

    def migrate(self, source, destination, expect_moved=None, count=None, timeout=IO_TIMEOUT):
        """Moves SOURCE's sessions to DESTINATION and checks roamctl said "ok moved M of N"
        with exit 0 (and M == N == expect_moved when given). Returns (M, N, address, ms);
        the whole line stays in self.last_summary."""
        result = self.migrate_raw(source, destination, count, timeout)
        line = result.stdout.strip()
        self.last_summary = line  # for moved_note()
        moved = parse_moved(line)
        ok = result.returncode == 0 and moved is not None and result.stderr == ""
        if ok and expect_moved is not None:
            ok = moved[0] == expect_moved and moved[1] == expect_moved
        if not ok:
            raise TestFailure("roamctl migrate %s -> %s: exit %d, stdout %r, stderr %r (expected \"ok moved %s of %s "
                              "sessions to %s in T ms\")\n%s" % (
                                  source, destination, result.returncode, result.stdout, result.stderr,
                                  expect_moved if expect_moved is not None else "M",
                                  expect_moved if expect_moved is not None else "N", self.address[destination],
                                  self.tails()))
        expected = self.address6[destination] if self.ipv6 else self.address[destination]
        check(moved[2] == expected, "roamctl migrate %s -> %s reported address %s, expected %s" % (
            source, destination, moved[2], expected))
        return moved

    def status(self, name, timeout=IO_TIMEOUT):
        """roamctl status of server NAME, parsed from its JSON line."""
        result = roamctl("status", "--server", self.controls[name], timeout=timeout)
        line = result.stdout.strip()
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if result.returncode != 0 or not isinstance(value, dict):
            raise TestFailure("roamctl status %s: exit %d, stdout %r, stderr %r" % (
                name, result.returncode, result.stdout, result.stderr))
        return value

    def wait_for_sessions(self, name, want, timeout=READY_TIMEOUT):
        """Polls NAME's status until it holds `want` sessions (connections close asynchronously)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.status(name)["sessions"]
            if got == want:
                return
            if time.monotonic() > deadline:
                raise TestFailure("server %s holds %d sessions, expected %d (waited %.0f s)" % (
                    name, got, want, timeout))
            time.sleep(0.05)

    def tails(self):
        return "\n".join("  %s:\n%s" % (p.describe(), p.tail(15)) for p in self._processes())

    def stop_all(self):
        """Stops the client, then A, then B; checks each. Returns {"client"|"A"|"B": StopResult}."""
        errors = []
        results = {}
        for key, proc in [("client", self.client)] + [(n, self.servers.get(n)) for n in self.NAMES]:
            if proc is None:
                continue
            try:
                results[key] = proc.stop()
            except TestFailure as e:
                errors.append(str(e))
                results[key] = proc.result
        if errors:
            raise TestFailure("\n".join(errors))
        return results



class Relay:
    """A UDP relay between the nodes of a TwoServers topology (pass routes=relay.routes):
    one socket per node; what arrives on the "A" socket goes to A's link port, and so on.
    A node's link takes datagrams only from the endpoints its routes name, so each datagram
    leaves from the relay socket standing for its sender (what the client sends toward A
    reaches A from the "client" socket, A's route to the client). Each datagram is one IP
    packet of the carrier link. Drops a seeded fraction `loss` of all
    datagrams, plus the first `drop_first[name]` datagrams toward each named node; `watch`,
    when given, sees every datagram forwarded as watch(name, data) (on the relay's thread).
    inject(name, data) sends a datagram of our own to node NAME, as if from the link (from
    the relay socket of the node the packet's IPv4 source names)."""

    def __init__(self, loss=0.0, seed=0, drop_first=None, watch=None):
        self.loss = loss
        self.rng = random.Random(seed)
        self.drop_first = dict(drop_first or {})
        self.watch = watch
        self.sockets = {}
        self.destination = {}
        self.forwarded = {}
        self.dropped = {}
        self.selector = selectors.DefaultSelector()
        for name in ("A", "B", "client"):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            self.sockets[name] = sock
            self.forwarded[name] = 0
            self.dropped[name] = 0
            self.selector.register(sock, selectors.EVENT_READ, name)
        self.stopping = threading.Event()
        self.thread = None

    def routes(self, ports):
        """For harness.TwoServers(routes=...): remembers the nodes' real ports, returns ours."""
        self.destination = {name: ("127.0.0.1", ports[name]) for name in self.sockets}
        return {name: sock.getsockname()[1] for name, sock in self.sockets.items()}

    def start(self):
        self.thread = threading.Thread(target=self._run, name="relay", daemon=True)
        self.thread.start()

    def _drop(self, name):
        if self.drop_first.get(name, 0) > 0:
            self.drop_first[name] -= 1
            return True
        return self.loss > 0 and self.rng.random() < self.loss

    def _run(self):
        while not self.stopping.is_set():
            for key, _ in self.selector.select(0.2):
                name = key.data
                sock = self.sockets[name]
                for _ in range(256):  # drain a batch, then look at the other sockets
                    try:
                        data, source = sock.recvfrom(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        return  # closed
                    if self._drop(name):
                        self.dropped[name] += 1
                        continue
                    if self.watch is not None:
                        self.watch(name, data)
                    sender = self.sockets.get(self._name_of_port(source[1]), sock)
                    try:
                        sender.sendto(data, self.destination[name])
                        self.forwarded[name] += 1
                    except (BlockingIOError, ConnectionRefusedError):
                        self.dropped[name] += 1  # a full buffer or a node not up: a loss too
                    except OSError:
                        return

    def _name_of_port(self, port):
        for name, destination in self.destination.items():
            if destination[1] == port:
                return name
        return None

    def inject(self, name, data, source=None):
        """Sends one datagram to node NAME's link port from the relay socket of node SOURCE
        (default: the node whose network holds the packet's IPv4 source address, else A for
        the client and the client for a server), so the node's link accepts it."""
        if source is None:
            source = "A" if name == "client" else "client"
            if len(data) >= 20 and data[0] >> 4 == 4:
                inner = ipaddress.ip_address(bytes(data[12:16]))
                for node, net in (("A", SERVER_NET), ("B", SERVER_B_NET), ("client", CLIENT_NET)):
                    if inner in ipaddress.ip_network(net):
                        source = node
        self.sockets[source].sendto(data, self.destination[name])

    def close(self):
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(5)
        for sock in self.sockets.values():
            sock.close()
        self.selector.close()

    def summary(self):
        return ", ".join("to %s: forwarded %d, dropped %d (%.1f%%)" % (
            name, self.forwarded[name], self.dropped[name],
            100.0 * self.dropped[name] / max(1, self.forwarded[name] + self.dropped[name]))
            for name in self.sockets)


class MarkedReader:
    """Reads a kernel socket to EOF (SHA-256 and count), for tests that act at byte marks
    while data flows: when the count passes marks[i], the reader waits until the main thread
    calls release(i), so the action (a move) starts with the rest of the stream still to
    come; the reader then goes on reading while the action runs.

        reader = MarkedReader(sock, [30 << 20, 60 << 20], limit=SIZE)
        worker = Worker(reader.run, name="reader"); worker.start()
        for i in range(2):
            if not reader.wait_for_mark(i, worker): ...   # ended early
            reader.release(i); do_the_move()
        worker.finish()

    A reset (ConnectionResetError) or a read timeout fails the test with the byte count.
    `max_rate` (bytes/s, None: as fast as it comes) paces the reads so the sender is still
    busy when a move starts after a mark, on a fast machine as on a slow (ASan) one."""

    def __init__(self, sock, marks, limit, what="the kernel client", max_rate=None):
        self.sock = sock
        self.max_rate = max_rate
        self.marks = list(marks)
        self.limit = limit
        self.what = what
        self.received = 0
        self.digest = hashlib.sha256()
        self.eof = False
        self.reached = 0     # marks passed
        self.released = 0    # marks whose action has started
        self.lock = threading.Condition()

    def run(self):
        buf = bytearray(1 << 20 if self.max_rate is None else 64 << 10)
        view = memoryview(buf)
        started = time.monotonic()
        while True:
            if self.max_rate is not None:
                ahead = self.received / self.max_rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            try:
                n = self.sock.recv_into(buf)
            except ConnectionResetError as e:
                raise TestFailure("%s saw a reset after %d of %d bytes: %r" % (self.what, self.received, self.limit, e))
            except socket.timeout:
                raise TestFailure("%s got no data for %.0f s after %d of %d bytes (hang)"
                                  % (self.what, self.sock.gettimeout() or 0, self.received, self.limit))
            if n == 0:
                with self.lock:
                    self.eof = True
                    self.lock.notify_all()
                return self.received
            self.digest.update(view[:n])
            with self.lock:
                self.received += n
                if self.received > self.limit:
                    raise TestFailure("%s received more than the %d bytes expected" % (self.what, self.limit))
                while self.reached < len(self.marks) and self.received >= self.marks[self.reached]:
                    self.reached += 1
                    self.lock.notify_all()
                while self.released < self.reached:
                    if not self.lock.wait(IO_TIMEOUT):
                        raise TestFailure("%s: action %d never started" % (self.what, self.released + 1))

    def wait_for_mark(self, index, worker):
        """True once mark `index` is passed; False if the stream ended (or the reader failed) first."""
        with self.lock:
            while self.reached <= index and not self.eof:
                if not worker.is_alive():
                    return False
                self.lock.wait(0.5)
            return self.reached > index

    def release(self, index):
        with self.lock:
            self.released = max(self.released, index + 1)
            self.lock.notify_all()


def raise_nofile_limit(want):
    """Raises the soft RLIMIT_NOFILE to at least `want` (up to the hard limit) for this
    process and the apps it starts afterwards. Returns (old soft, new soft)."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft, soft
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return soft, new


# ---------------------------------------------------------------- data helpers

def echo_round_trip(sock, message=2048, what=None):
    """Sends `message` (bytes, or that many random bytes) on an echo connection and checks
    that exactly it comes back. A reset, EOF or no echo within the socket's timeout first
    is a failure, named after `what`."""
    if isinstance(message, int):
        message = os.urandom(message)
    what = what or "echo of %d bytes" % len(message)
    sock.sendall(message)
    got = b""
    while len(got) < len(message):
        try:
            part = sock.recv(len(message) - len(got))
        except ConnectionResetError as e:
            raise TestFailure("%s: reset after %d bytes: %r" % (what, len(got), e))
        except socket.timeout:
            raise TestFailure("%s: no echo within the socket's timeout after %d bytes" % (what, len(got)))
        if not part:
            raise TestFailure("%s: EOF after %d bytes" % (what, len(got)))
        got += part
    check(got == message, "%s: came back as %r, expected %r" % (what, got[:64], message[:64]))


def write_until_stalled(sock, data, chunk=64 * 1024, idle_s=1.0):
    """Writes `data` on `sock` without reading until the kernel takes no byte for `idle_s`
    seconds (every queue on the way is full) or all of it went in; returns how many bytes
    went in. The socket's timeout is restored. Whether it stalled (the return value is
    less than len(data)) is the caller's to check."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    sent = 0
    last = time.monotonic()  # the last write that took bytes
    try:
        while sent < len(data):
            left = idle_s - (time.monotonic() - last)
            if left <= 0:
                break
            _, ready, _ = select.select([], [sock], [], left)
            if not ready:
                break
            try:
                sent += sock.send(data[sent:sent + chunk])
                last = time.monotonic()
            except BlockingIOError:
                time.sleep(0.01)
    finally:
        sock.settimeout(timeout)
    return sent


def scaled(nbytes, minimum, multiple=1 << 20):
    """nbytes times ROAMSTACK_TEST_SCALE (default 1.0), rounded down to a multiple of
    `multiple` (1 MiB unless given), at least `minimum`."""
    value = float(os.environ.get("ROAMSTACK_TEST_SCALE", "1.0"))
    return max(minimum, int(nbytes * value) // multiple * multiple)


def pseudo_random_bytes(seed, size):
    return random.Random(seed).randbytes(size)


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def recv_until_eof(sock, hasher=None, keep=False, limit=None):
    """Reads until EOF. Returns (byte count, bytes or None). Raises on reset/timeout."""
    total = 0
    chunks = [] if keep else None
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return total, (b"".join(chunks) if keep else None)
        total += len(data)
        if hasher is not None:
            hasher.update(data)
        if keep:
            chunks.append(data)
        if limit is not None and total > limit:
            raise TestFailure("received more than the %d bytes expected" % limit)


class KernelBackend:
    """A kernel TCP server on 127.0.0.1 (the backend behind roam-server relay): accepts in a
    daemon thread and serves each connection in its own thread through `serve(conn)`,
    which subclasses define."""

    def __init__(self, backlog=1024):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(backlog)
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept_loop, name="backend-accept", daemon=True).start()

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), name="backend-conn", daemon=True).start()

    def serve(self, conn):
        raise NotImplementedError

    def close(self):
        self.listener.close()


class Worker(threading.Thread):
    """A daemon thread that keeps its result or exception for the main thread."""

    def __init__(self, target, *args, name=None):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._args = args
        self.result = None
        self.error = None
        self.error_text = None

    def run(self):
        try:
            self.result = self._target_fn(*self._args)
        except BaseException as e:  # reported by finish()
            self.error = e
            self.error_text = traceback.format_exc()

    def finish(self, timeout=IO_TIMEOUT):
        self.join(timeout)
        if self.is_alive():
            raise TestFailure("thread %s still running after %.0f s (hang)" % (self.name, timeout))
        if self.error is not None:
            if isinstance(self.error, TestFailure):
                raise self.error
            raise TestFailure("thread %s failed: %r\n%s" % (self.name, self.error, self.error_text))
        return self.result


# ---------------------------------------------------------------- test entry point

def run(main):
    """Runs a test's main(); exits 0 on pass, 1 with a clear message on failure."""
    global _failed
    name = os.path.basename(sys.argv[0])
    log("%s: server %s\n%s: client %s" % (name, ROAM_SERVER, name, ROAM_CLIENT))
    for path in (ROAM_SERVER, ROAM_CLIENT):
        if not os.access(path, os.X_OK):
            log("FAIL %s: binary not found or not executable: %s" % (name, path))
            sys.exit(1)
    started = time.monotonic()
    code = 0
    try:
        main()
        # Anything the test left running must still stop cleanly.
        for proc in _all_processes:
            if proc.result is None:
                proc.stop()
    except TestFailure as e:
        code = 1
        log("FAIL %s: %s" % (name, e))
    except SystemExit:
        raise
    except BaseException:
        code = 1
        log("FAIL %s: unexpected error\n%s" % (name, traceback.format_exc()))
    elapsed = time.monotonic() - started
    if code == 0:
        log("PASS %s (%.1f s)" % (name, elapsed))
        if _log_dir is not None and os.environ.get("ROAM_TEST_KEEP_LOGS"):
            log("logs kept in %s (ROAM_TEST_KEEP_LOGS)" % _log_dir)
        elif _log_dir is not None:
            shutil.rmtree(_log_dir, ignore_errors=True)
    else:
        _cleanup_at_exit()
        if _log_dir is not None:
            log("logs kept in %s" % _log_dir)
    sys.stdout.flush()
    sys.exit(code)
