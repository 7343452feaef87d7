#!/usr/bin/env python3
"""Scale: many idle carriers through roam-client, against the kernel, measured in one run.

Topology (UDP links on loopback, no privilege needed; root only to raise RLIMIT_NOFILE's
hard limit): roam-client 198.18.11.2 with a forward (-L) to roam-server A 198.18.12.2;
roam-server B 198.18.13.2 beside it; both servers `echo` with a --control port, members of
one lab pool (tools/lab_keys.py: --key, --pool-cert, --operators). Every phase that opens
connections through the client gets a fresh lab (fresh processes).

Phases (each bounded by a timeout; what was reached is reported, never a crash):
  kernel    reference: N direct kernel connections 127.0.0.1 -> a local echo server
            process (epoll, this file with --echo-server), each one echo round trip:
            open_s_N_kernel, and the kernel memory they hold: kernel_bytes_per_socket.
  big       N connections through the client's forward to A (open_s_N), the client's and
            A's memory growth per idle connection, then `migrate` of all N from A to B
            (move_ms_N, server_cpu_ms_move_N).
  move1000  when N != 1000: a fresh lab, 1000 connections, the same move (move_ms_1000).
  carriers  a fresh lab (client + A): connections through the forward until the first
            failure, --carriers-cap or --carriers-time (max_carriers_client).

t0 of a move: the migrate_request frame (stack/migrate/control_frame.hpp, what roamctl
sends) is written to A's control port over a connection opened (the port's Noise XX
handshake done as the pool's operator, with tests/integration/control_port.py's
SecureControl; so the driver runs under /usr/bin/python3, for python3-dissononce) and
proved served (a status_request answered) beforehand, as tools/bench/handover_bench.py
does. Then:
  move_reply_ms_N  t0 -> A's reply frame ("ok moved M of N sessions ...");
  move_ms_N        t0 -> every connection was heard from on the new path: after the
                   reply, each connection sends one byte; the last echo back is t1.
The last line of stdout is one JSON object. See tools/bench/README.md ("scale").
"""
import argparse
import ctypes
import errno
import json
import os
import re
import resource
import select
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import free_port, stop_processes  # noqa: E402
from control_auth import OperatorConnection, lab_pool, use_debian_python  # noqa: E402

ROAM_SERVER = os.environ.get("ROAM_SERVER", "build/apps/roam-server")
ROAM_CLIENT = os.environ.get("ROAM_CLIENT", "build/apps/roam-client")
ROAMCTL = os.environ.get("ROAMCTL", os.path.join(os.path.dirname(ROAM_SERVER), "roamctl"))
CLIENT_ADDR, A_ADDR, B_ADDR = "198.18.11.2", "198.18.12.2", "198.18.13.2"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
IP_BIND_ADDRESS_NO_PORT = 24
# Kernel sources for the driver's connections: 127.0.0.1..127.0.0.4, so that more than one
# ephemeral port range (28k ports per source and destination) is available for the cap.
SOURCES = ["127.0.0.%d" % i for i in range(1, 5)]


def note(*args):
    print("[scale]", *args, file=sys.stderr, flush=True)


def mono():
    return time.monotonic()


# ------------------------------------------------------------------------------ /proc

def cpu_ms(pid):
    """utime + stime of a process in ms (/proc/PID/stat fields 14 and 15)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000.0 / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def proc_kib_field(path, field):
    """The value of a "Field:   N kB" line of a /proc file, in bytes; None when absent."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def memory_bytes(pid):
    """(Pss from smaps_rollup, VmRSS) in bytes; Pss is None where smaps_rollup is missing."""
    return (proc_kib_field("/proc/%d/smaps_rollup" % pid, "Pss"),
            proc_kib_field("/proc/%d/status" % pid, "VmRSS"))


def kernel_memory():
    """Kernel memory that sockets occupy, in bytes: the sum over /proc/slabinfo of
    active_objs * objsize (objects in use, whichever slab cache), plus TCP's buffer pages
    (/proc/net/sockstat 'TCP: ... mem N', pages). Also Slab from /proc/meminfo (whole slab
    pages, partly free ones included) for information."""
    slab_objs = None
    try:
        with open("/proc/slabinfo") as f:
            total = 0
            for line in f:
                if line.startswith(("slabinfo", "#")):
                    continue
                parts = line.split()
                total += int(parts[1]) * int(parts[3])
            slab_objs = total
    except (OSError, ValueError, IndexError):
        pass
    tcp_mem = 0
    with open("/proc/net/sockstat") as f:
        for line in f:
            if line.startswith("TCP:"):
                words = line.split()
                tcp_mem = int(words[words.index("mem") + 1]) * PAGE
    slab_pages = None
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                slab_pages = int(line.split()[1]) * 1024
    return {"slab_objects": slab_objs, "tcp_mem": tcp_mem, "meminfo_slab": slab_pages}


# ------------------------------------------------------------------------------ processes

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL should the driver die without its finally."""
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def start(argv, log_path):
    log = open(log_path, "w")
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)
    finally:
        log.close()


def wait_for_port(port, proc, timeout=20):
    deadline = mono() + timeout
    while mono() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("process %d exited (%s) before port %d opened" % (proc.pid, proc.returncode, port))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d never opened" % port)


# ------------------------------------------------------------------------------ control protocol

# stack/migrate/control_frame.hpp: u32 payload length (big-endian) | u8 type | payload.
FRAME_MIGRATE_REQUEST, FRAME_REPLY, FRAME_STATUS_REQUEST = 1, 4, 5
FRAME_HEADER = struct.Struct("!IB")


def control_frame(kind, text):
    payload = text.encode("ascii")
    return FRAME_HEADER.pack(len(payload), kind) + payload


class ControlConnection:
    """A kernel TCP connection to a server's control port as operator `key_file`, opened
    (Noise handshake done) and proved served (one status_request answered) before it is
    used, so a move starts with the write alone."""

    def __init__(self, address, key_file, timeout=30):
        self.sock = OperatorConnection(address, key_file, timeout)
        self.buffer = b""

    def request(self, kind, text, timeout):
        """Writes one frame; returns (t0, t1, reply text): t0 right before the write, t1 when
        the reply frame is complete. Raises RuntimeError on a timeout or another frame."""
        frame = control_frame(kind, text)
        t0 = mono()
        self.sock.settimeout(timeout)
        self.sock.sendall(frame)
        deadline = t0 + timeout
        while True:
            if len(self.buffer) >= FRAME_HEADER.size:
                length, kind_in = FRAME_HEADER.unpack_from(self.buffer)
                if kind_in != FRAME_REPLY:
                    raise RuntimeError("control: unexpected frame type %d" % kind_in)
                if len(self.buffer) >= FRAME_HEADER.size + length:
                    text_in = self.buffer[FRAME_HEADER.size:FRAME_HEADER.size + length]
                    self.buffer = self.buffer[FRAME_HEADER.size + length:]
                    return t0, mono(), text_in.decode("utf-8", "replace").strip()
            left = deadline - mono()
            if left <= 0:
                raise RuntimeError("control: no reply within %g s" % timeout)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                raise RuntimeError("control: no reply within %g s" % timeout)
            if not chunk:
                raise RuntimeError("control: connection closed without a reply")
            self.buffer += chunk

    def status(self, timeout=30):
        _, _, text = self.request(FRAME_STATUS_REQUEST, "", timeout)
        try:
            return json.loads(text)
        except ValueError:
            return {}

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------------------ connections

class Outcome:
    def __init__(self):
        self.ok = []            # sockets that completed an echo round trip (kept open)
        self.failures = []      # dicts: kind, errno/detail, seconds from connect to failure, index
        self.elapsed = 0.0
        self.attempted = 0
        self.stopped_by = None  # "count", "deadline", "failure"
        self.first_failure_at = None  # len(ok) when the first failure was seen


def open_connections(port, count, window, deadline, conn_timeout, stop_on_failure=False, sources=SOURCES,
                     settle_after_failure=5.0, guard=None):
    """Opens `count` kernel TCP connections to 127.0.0.1:port, at most `window` at a time
    in progress; each connects, sends one byte and waits for it back, then stays open.
    Stops at `deadline` (monotonic) and, with stop_on_failure, at the first failure (then
    waits up to settle_after_failure s for those in progress). Never raises for a
    connection's failure: returns an Outcome. guard(), called every half second, returns
    a reason to stop (stopped_by) or None."""
    out = Outcome()
    ep = select.epoll()
    pending = {}  # fd -> (sock, started, stage, index)
    t_start = mono()
    issued = 0
    halt_at = None
    oldest_check = mono()
    guard_reason = None

    def fail(fd, kind, detail):
        sock, started, _, index = pending.pop(fd)
        try:
            ep.unregister(fd)
        except OSError:
            pass
        sock.close()
        if out.first_failure_at is None:
            out.first_failure_at = len(out.ok)
        out.failures.append({"kind": kind, "detail": detail, "after_s": round(mono() - started, 3), "index": index})

    try:
        while True:
            now = mono()
            stopping = (now >= deadline or (stop_on_failure and out.failures) or guard_reason)
            if stopping and halt_at is None:
                halt_at = now
                out.stopped_by = ("failure" if out.failures and stop_on_failure else guard_reason or "deadline")
            if halt_at is not None and (not pending or now - halt_at > settle_after_failure or now >= deadline):
                break
            if halt_at is None:
                while len(pending) < window and issued < count:
                    index = issued
                    issued += 1
                    try:
                        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    except OSError as e:
                        if out.first_failure_at is None:
                            out.first_failure_at = len(out.ok)
                        out.failures.append({"kind": "driver_socket", "detail": errno.errorcode.get(e.errno, str(e)),
                                             "after_s": 0.0, "index": index})
                        break
                    sock.setblocking(False)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    try:
                        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                        sock.bind((sources[index % len(sources)], 0))
                    except OSError:
                        pass
                    rc = sock.connect_ex(("127.0.0.1", port))
                    fd = sock.fileno()
                    pending[fd] = (sock, mono(), "connect", index)
                    if rc not in (0, errno.EINPROGRESS):
                        fail(fd, "connect", errno.errorcode.get(rc, str(rc)))
                        continue
                    ep.register(fd, select.EPOLLOUT)
                if issued >= count and not pending:
                    out.stopped_by = "count"
                    break
            for fd, events in ep.poll(0.2):
                if fd not in pending:
                    continue
                sock, started, stage, index = pending[fd]
                if stage == "connect":
                    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        fail(fd, "connect", errno.errorcode.get(err, str(err)))
                        continue
                    try:
                        sock.send(b"x")
                    except OSError as e:
                        fail(fd, "send", errno.errorcode.get(e.errno, str(e)))
                        continue
                    pending[fd] = (sock, started, "echo", index)
                    ep.modify(fd, select.EPOLLIN)
                else:
                    try:
                        data = sock.recv(16)
                    except ConnectionResetError:
                        fail(fd, "reset", "ECONNRESET before the echo")
                        continue
                    except BlockingIOError:
                        continue
                    except OSError as e:
                        fail(fd, "recv", errno.errorcode.get(e.errno, str(e)))
                        continue
                    if not data:
                        fail(fd, "eof", "closed before the echo")
                        continue
                    ep.unregister(fd)
                    del pending[fd]
                    out.ok.append(sock)
            now = mono()
            if now - oldest_check > 0.5:
                oldest_check = now
                if guard is not None and guard_reason is None:
                    guard_reason = guard()
                for fd in [fd for fd, v in pending.items() if now - v[1] > conn_timeout]:
                    fail(fd, "timeout", "no echo within %g s (stage %s)" % (conn_timeout, pending[fd][2]))
    finally:
        for sock, _, _, _ in pending.values():
            sock.close()
        ep.close()
    out.attempted = issued
    out.elapsed = mono() - t_start
    if out.stopped_by is None:
        out.stopped_by = "deadline"
    return out


def echo_all(socks, deadline):
    """One byte on every socket, then waits for every echo until `deadline`. Returns
    (echo arrival times, failures by kind)."""
    ep = select.epoll()
    waiting = {}
    failures = {}

    def failed(kind):
        failures[kind] = failures.get(kind, 0) + 1

    for s in socks:
        try:
            s.send(b"y")
            ep.register(s.fileno(), select.EPOLLIN)
            waiting[s.fileno()] = s
        except OSError as e:
            failed("send " + errno.errorcode.get(e.errno, str(e)))
    times = []
    try:
        while waiting and mono() < deadline:
            for fd, _ in ep.poll(0.2):
                s = waiting.get(fd)
                if s is None:
                    continue
                kind = None
                try:
                    data = s.recv(16)
                except BlockingIOError:
                    continue
                except OSError as e:
                    data = b""
                    kind = errno.errorcode.get(e.errno, str(e))
                ep.unregister(fd)
                del waiting[fd]
                if data:
                    times.append(mono())
                else:
                    failed(kind or "eof")
    finally:
        ep.close()
    return times, failures


def close_all(socks):
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


# ------------------------------------------------------------------------------ the lab

class Lab:
    """roam-server A (and B) `echo` with control ports, roam-client with a forward to A."""

    def __init__(self, workdir, tag, pool, with_b=True, move_timeout=120):
        self.workdir = workdir
        self.pool = pool
        self.tag = tag
        self.procs = {}
        self.logs = {}
        udp = {name: free_port(socket.SOCK_DGRAM) for name in ("c", "a", "b")}
        self.control = {name: "127.0.0.1:%d" % free_port(socket.SOCK_STREAM) for name in ("a", "b")}
        self.forward = free_port(socket.SOCK_STREAM)
        try:
            for name, addr in (("a", A_ADDR), ("b", B_ADDR)):
                if name == "b" and not with_b:
                    continue
                self.start("server_" + name, [
                    ROAM_SERVER, "--link", "udp:127.0.0.1:%d" % udp[name], "--addr", addr,
                    "--route", "198.18.11.0/24=127.0.0.1:%d" % udp["c"], "--control", self.control[name]] +
                    pool.server_args(name) + ["--move-timeout", str(int(move_timeout)), "--log-level", "warn", "echo"])
            self.start("client", [
                ROAM_CLIENT, "--link", "udp:127.0.0.1:%d" % udp["c"], "--addr", CLIENT_ADDR,
                "--route", "198.18.12.0/24=127.0.0.1:%d" % udp["a"],
                "--route", "198.18.13.0/24=127.0.0.1:%d" % udp["b"], "--log-level", "warn",
                "-L", "127.0.0.1:%d:%s:7000" % (self.forward, A_ADDR)])
            wait_for_port(self.forward, self.procs["client"])
            for name in self.control:
                if "server_" + name in self.procs:
                    wait_for_port(int(self.control[name].split(":")[1]), self.procs["server_" + name])
        except BaseException:
            self.stop()
            raise

    def start(self, name, argv):
        self.logs[name] = os.path.join(self.workdir, "%s-%s.log" % (self.tag, name))
        self.procs[name] = start(argv, self.logs[name])

    def pid(self, name):
        return self.procs[name].pid

    def alive(self, name):
        return self.procs[name].poll() is None

    def log_size(self, name):
        try:
            return os.path.getsize(self.logs[name])
        except OSError:
            return 0

    def log_lines(self, name, since=0, limit=12):
        """Distinct warning/error lines of a process's log after byte offset `since` (the
        first `limit`, each with how often it occurred, numbers collapsed for counting)."""
        try:
            with open(self.logs[name], "rb") as f:
                f.seek(since)
                text = f.read(8 << 20).decode("utf-8", "replace")
        except OSError:
            return []
        seen = {}
        order = []
        for line in text.splitlines():
            if not line.strip():
                continue
            key = re.sub(r"\d+", "N", re.sub(r"^\[[^\]]*\]\s*", "", line))
            if key not in seen:
                seen[key] = [line.strip(), 0]
                order.append(key)
            seen[key][1] += 1
        return ["%s (x%d)" % (seen[k][0][:300], seen[k][1]) for k in order[:limit]]

    def heap_in_use(self, name):
        """glibc's allocated bytes in the process (malloc_stats() called through gdb, which
        prints to the process's stderr, i.e. its log); None without gdb or on failure."""
        gdb = "/usr/bin/gdb" if os.path.exists("/usr/bin/gdb") else None
        if gdb is None or not self.alive(name):
            return None
        before = self.log_size(name)
        try:
            subprocess.run([gdb, "-p", str(self.pid(name)), "-batch", "-nx", "-ex", "call (void) malloc_stats()",
                            "-ex", "detach"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            return None
        time.sleep(0.2)
        with open(self.logs[name], "rb") as f:
            f.seek(before)
            text = f.read().decode("utf-8", "replace")
        m = re.findall(r"Total \(incl\. mmap\):\s*system bytes\s*=\s*(\d+)\s*in use bytes\s*=\s*(\d+)", text)
        return int(m[-1][1]) if m else None

    def stop(self):
        """Stops every process; returns their exit codes (-9: needed SIGKILL)."""
        stop_processes(list(self.procs.values()), 15)
        self.exit_codes = {name: p.returncode for name, p in self.procs.items()}
        return self.exit_codes


def wait_registrations(control, count, seconds):
    """Polls the server's status until `registrations` reaches count; returns what it reached."""
    deadline = mono() + seconds
    got = 0
    while True:
        try:
            got = control.status().get("registrations", 0)
        except (RuntimeError, OSError):
            pass
        if got >= count or mono() > deadline:
            return got
        time.sleep(0.2)


def start_move_profile(lab, pid, n):
    """With env SCALE_PROFILE_MOVE=1: `perf record -g` attached to roam-client from just
    before t0 until t1 (perf.data in the lab's directory; the figures of that move then
    include perf's overhead). None otherwise, or when perf cannot start."""
    if os.environ.get("SCALE_PROFILE_MOVE") != "1" or pid is None:
        return None
    path = os.path.join(lab.workdir, "%s-client-move-n%d.perf.data" % (lab.tag, n))
    try:
        proc = subprocess.Popen(["perf", "record", "-F", "499", "-g", "-p", str(pid), "-o", path],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError as e:
        note("  perf: %s" % e)
        return None
    time.sleep(0.5)  # perf attaches before t0
    note("  profiling roam-client during the move: %s" % path)
    return proc


def stop_move_profile(proc):
    if proc is None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def move(lab, socks, timeout, reg_wait):
    """Moves every session of A to B (see the module docstring). Returns a dict of figures;
    figures that could not be measured are None."""
    res = {"sessions": len(socks)}
    control = ControlConnection(lab.control["a"], lab.pool.operator_key)
    try:
        res["registrations"] = wait_registrations(control, len(socks), reg_wait)
        if res["registrations"] < len(socks):
            note("  only %d of %d registrations at A after %d s; moving anyway" % (res["registrations"], len(socks),
                                                                                  reg_wait))
        b_pid = lab.pid("server_b")
        a_pid = lab.pid("server_a")
        c_pid = lab.pid("client")
        cpu0 = {k: cpu_ms(p) for k, p in (("b", b_pid), ("a", a_pid), ("c", c_pid))}
        log_mark = lab.log_size("client")
        profiler = start_move_profile(lab, c_pid, len(socks))
        try:
            t0, t_reply, reply = control.request(FRAME_MIGRATE_REQUEST, "to=" + lab.control["b"], timeout)
        except (RuntimeError, OSError) as e:
            res["error"] = str(e)
            res["reply"] = None
            note("  move: %s" % e)
            return res
        res["reply"] = reply
        res["move_reply_ms"] = (t_reply - t0) * 1000
        m = re.match(r"ok moved (\d+) of (\d+)", reply)
        res["moved"] = int(m.group(1)) if m else 0
        times, failures = echo_all(socks, t0 + timeout)
        echoed = len(times)
        t1 = mono()
        stop_move_profile(profiler)
        cpu1 = {k: cpu_ms(p) for k, p in (("b", b_pid), ("a", a_pid), ("c", c_pid))}
        res["echoed"] = echoed
        res["echo_failures"] = failures
        res["move_ms"] = (times[-1] - t0) * 1000 if echoed == len(socks) and res["moved"] == len(socks) else None
        # When the given share of all connections had echoed (None: never within the limit).
        for q in (50, 90):
            k = (len(socks) * q + 99) // 100
            res["echo_p%d_ms" % q] = (times[k - 1] - t0) * 1000 if 0 < k <= echoed else None
        res["waited_ms"] = (t1 - t0) * 1000
        res["cpu_ms"] = {k: (round(cpu1[k] - cpu0[k], 1) if cpu0[k] is not None and cpu1[k] is not None else None)
                         for k in cpu0}
        res["client_log"] = lab.log_lines("client", log_mark, 6)
        try:
            st = control.status()
            res["a_status"] = {k: st.get(k) for k in ("sessions_exported", "moves_timed_out", "sessions_without_channel",
                                                      "acms_sent", "acms_undeliverable") if k in st}
        except (RuntimeError, OSError):
            pass
    finally:
        control.close()
    return res


# ------------------------------------------------------------------------------ echo server

def echo_server(port_file):
    """The kernel reference's echo server (a process of its own, as roam-server is):
    epoll, accepts everything, echoes every byte. Writes its port to port_file."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4096)
    ls.setblocking(False)
    with open(port_file + ".tmp", "w") as f:
        f.write(str(ls.getsockname()[1]))
    os.rename(port_file + ".tmp", port_file)
    ep = select.epoll()
    ep.register(ls.fileno(), select.EPOLLIN)
    conns = {}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        for fd, _ in ep.poll():
            if fd == ls.fileno():
                while True:
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break
                    c.setblocking(False)
                    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    conns[c.fileno()] = c
                    ep.register(c.fileno(), select.EPOLLIN)
                continue
            c = conns.get(fd)
            if c is None:
                continue
            try:
                data = c.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                try:
                    c.sendall(data)
                except OSError:
                    pass
            else:
                ep.unregister(fd)
                del conns[fd]
                c.close()


# ------------------------------------------------------------------------------ phases

def phase_kernel(args, workdir, n):
    """N direct kernel connections to a local echo server process: open time and memory."""
    port_file = os.path.join(workdir, "echo.port")
    if os.path.exists(port_file):
        os.unlink(port_file)
    proc = start([sys.executable, os.path.abspath(__file__), "--echo-server", port_file],
                 os.path.join(workdir, "kernel-echo.log"))
    res = {}
    socks = []
    try:
        deadline = mono() + 20
        while not os.path.exists(port_file):
            if mono() > deadline or proc.poll() is not None:
                raise RuntimeError("kernel echo server did not start")
            time.sleep(0.05)
        with open(port_file) as f:
            port = int(f.read())
        time.sleep(0.3)
        before = kernel_memory()
        out = open_connections(port, n, args.window, mono() + args.open_timeout, args.conn_timeout)
        socks = out.ok
        res["opened"] = len(socks)
        res["open_s"] = out.elapsed if len(socks) == n else None
        res["failures"] = len(out.failures)
        time.sleep(1.0)  # idle: delayed ACKs sent, receive queues empty
        after = kernel_memory()
        res["memory_delta"] = {k: (after[k] - before[k]) if after[k] is not None and before[k] is not None else None
                               for k in before}
        if socks and res["memory_delta"]["slab_objects"] is not None:
            total = res["memory_delta"]["slab_objects"] + res["memory_delta"]["tcp_mem"]
            res["bytes_per_pair"] = total / len(socks)
        if socks and res["memory_delta"]["meminfo_slab"] is not None:
            res["meminfo_slab_bytes_per_pair"] = (res["memory_delta"]["meminfo_slab"]
                                                  + res["memory_delta"]["tcp_mem"]) / len(socks)
    finally:
        close_all(socks)
        stop_processes([proc], 10)
    return res


def phase_big(args, workdir, pool, n, rep, do_move=True):
    """N connections through the client to A: open time, memory per idle connection, then
    the move of all N to B."""
    res = {"n": n}
    lab = Lab(workdir, "big%d-n%d" % (rep, n), pool, move_timeout=args.move_timeout)
    socks = []
    try:
        time.sleep(0.5)
        base = {name: memory_bytes(lab.pid(name)) for name in ("client", "server_a")}
        heap0 = {name: lab.heap_in_use(name) for name in ("client", "server_a")} if args.heap else {}
        mark = lab.log_size("client")
        out = open_connections(lab.forward, n, args.window, mono() + args.open_timeout, args.conn_timeout)
        socks = out.ok
        res["opened"] = len(socks)
        res["open_s"] = out.elapsed if len(socks) == n else None
        res["open_elapsed_s"] = out.elapsed
        res["open_failures"] = summarize_failures(out.failures)
        if len(socks) < n:
            res["open_stopped_by"] = out.stopped_by
            res["client_log"] = lab.log_lines("client", mark, 8)
        note("  opened %d of %d through the client in %.2f s (%d failures)" % (len(socks), n, out.elapsed,
                                                                                len(out.failures)))
        time.sleep(1.0)
        after = {name: memory_bytes(lab.pid(name)) for name in ("client", "server_a")}
        heap1 = {name: lab.heap_in_use(name) for name in ("client", "server_a")} if args.heap else {}
        if socks:
            for name, key in (("client", "client"), ("server_a", "server")):
                pss0, rss0 = base[name]
                pss1, rss1 = after[name]
                use_pss = pss0 is not None and pss1 is not None
                res[key + "_pss_bytes_per_idle_conn"] = ((pss1 - pss0) if use_pss else (rss1 - rss0)) / len(socks)
                res[key + "_memory_source"] = "Pss" if use_pss else "VmRSS"
                res[key + "_rss_before_after"] = [rss0, rss1]
                res[key + "_bytes_per_idle_conn"] = res[key + "_pss_bytes_per_idle_conn"]
                if heap0.get(name) is not None and heap1.get(name) is not None:
                    heap = (heap1[name] - heap0[name]) / len(socks)
                    res[key + "_heap_bytes_per_idle_conn"] = heap
                    # Pss misses growth inside memory touched before (roam-server warms 64 MiB
                    # of heap at start); the heap count misses memory outside malloc. The
                    # figure is the larger of the two; both are in the JSON.
                    if heap > res[key + "_bytes_per_idle_conn"]:
                        res[key + "_bytes_per_idle_conn"] = heap
                        res[key + "_memory_source"] = "glibc heap in use (malloc_stats)"
        if do_move and socks and lab.alive("server_a") and lab.alive("client"):
            note("  moving %d sessions A -> B" % len(socks))
            res["move"] = move(lab, socks, args.move_timeout, args.registration_wait)
            mv = res["move"]
            note("  move: reply %s after %s ms; echoes %d of %d, last at %s ms; B cpu %s ms" % (
                mv.get("reply"), fmt(mv.get("move_reply_ms")), mv.get("echoed", 0), len(socks), fmt(mv.get("move_ms")),
                (mv.get("cpu_ms") or {}).get("b")))
        for name in lab.procs:
            if not lab.alive(name):
                res.setdefault("died", []).append("%s exit %s" % (name, lab.procs[name].returncode))
    finally:
        res["exit_codes"] = lab.stop()
        close_all(socks)
    return res


def phase_carriers(args, workdir, pool):
    """Connections through the client until the first failure, the cap or the time limit."""
    res = {"cap": args.carriers_cap, "time_limit_s": args.carriers_time}
    lab = Lab(workdir, "carriers", pool, with_b=False, move_timeout=args.move_timeout)
    socks = []
    try:
        mark = lab.log_size("client")
        client_pid = lab.pid("client")
        limit = args.carriers_max_rss_mib << 20

        def guard():
            _, rss = memory_bytes(client_pid)
            return "memory_guard" if rss is not None and rss > limit else None

        out = open_connections(lab.forward, args.carriers_cap, args.window, mono() + args.carriers_time,
                               args.carrier_conn_timeout, stop_on_failure=True, guard=guard)
        socks = out.ok
        res["reached"] = len(socks)
        res["ok_before_first_failure"] = out.first_failure_at
        res["attempted"] = out.attempted
        res["elapsed_s"] = round(out.elapsed, 2)
        res["stopped_by"] = "cap" if out.stopped_by == "count" else out.stopped_by
        res["failures"] = summarize_failures(out.failures)
        res["first_failure"] = out.failures[0] if out.failures else None
        res["client_alive"] = lab.alive("client")
        res["client_log"] = lab.log_lines("client", mark, 8)
        res["client_fds"] = count_fds(lab.pid("client")) if lab.alive("client") else None
        res["client_rss"] = memory_bytes(lab.pid("client"))[1] if lab.alive("client") else None
        res["rss_limit"] = limit
    finally:
        res["exit_codes"] = lab.stop()
        close_all(socks)
    return res


def count_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None


def summarize_failures(failures):
    kinds = {}
    for f in failures:
        key = "%s: %s" % (f["kind"], f["detail"])
        k = kinds.setdefault(key, {"count": 0, "after_s_max": 0.0})
        k["count"] += 1
        k["after_s_max"] = max(k["after_s_max"], f["after_s"])
    return kinds


def fmt(x):
    return "%.1f" % x if isinstance(x, (int, float)) else "null"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def rnd(x, digits=3):
    return round(x, digits) if isinstance(x, (int, float)) else None


def raise_nofile(want):
    """Raises RLIMIT_NOFILE (the hard limit too where allowed: root). Returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < want:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                nr_open = int(f.read())
        except (OSError, ValueError):
            nr_open = want
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, nr_open), min(want, nr_open)))
        except (ValueError, OSError):
            pass
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=10000, help="N idle connections (default 10000)")
    parser.add_argument("--quick", action="store_true", help="N=1000, no separate 10000 move, short carrier phase")
    parser.add_argument("--reps", type=int, default=1, help="repetitions of the kernel, big and move1000 phases")
    parser.add_argument("--window", type=int, default=128, help="connections in progress at once (default 128)")
    parser.add_argument("--open-timeout", type=float, default=150, help="limit of one opening phase, s")
    parser.add_argument("--conn-timeout", type=float, default=30, help="one connection's connect+echo limit, s")
    parser.add_argument("--move-timeout", type=float, default=120,
                        help="limit of one move (reply and every echo), s; also the servers' --move-timeout")
    parser.add_argument("--registration-wait", type=float, default=60,
                        help="wait at most this long for A to hold every registration before a move, s")
    parser.add_argument("--carriers-cap", type=int, default=40000)
    parser.add_argument("--carriers-time", type=float, default=150, help="limit of the carriers phase, s")
    parser.add_argument("--carrier-conn-timeout", type=float, default=30,
                        help="a carrier connect+echo slower than this counts as the failure, s")
    parser.add_argument("--carriers-max-rss-mib", type=int, default=None,
                        help="stop the carriers phase when roam-client's RSS exceeds this (default: half of "
                             "MemAvailable at start)")
    parser.add_argument("--skip-carriers", action="store_true")
    parser.add_argument("--no-heap", dest="heap", action="store_false",
                        help="do not attach gdb for glibc's heap-in-use figures")
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--echo-server", metavar="PORT_FILE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.echo_server:
        echo_server(args.echo_server)
        return 0
    use_debian_python()
    if args.quick:
        args.connections = 1000
        args.carriers_cap = min(args.carriers_cap, 5000)
        args.carriers_time = min(args.carriers_time, 60)
    n_wanted = args.connections
    if args.carriers_max_rss_mib is None:
        with open("/proc/meminfo") as f:
            avail = [int(line.split()[1]) for line in f if line.startswith("MemAvailable:")]
        args.carriers_max_rss_mib = (avail[0] // 1024 // 2) if avail else 8192

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    nofile = raise_nofile(max(2 * args.carriers_cap, 2 * n_wanted) + 1024)
    # The driver and one peer process each hold one fd per connection.
    fit = max(0, nofile - 512)
    n = min(n_wanted, fit)
    capped = n < n_wanted
    if capped:
        note("RLIMIT_NOFILE %d: N capped to %d (wanted %d)" % (nofile, n, n_wanted))
    cap_wanted = args.carriers_cap
    args.carriers_cap = min(args.carriers_cap, fit)
    note("N=%d, window %d, RLIMIT_NOFILE %d, reps %d" % (n, args.window, nofile, args.reps))

    workdir = tempfile.mkdtemp(prefix="roam-bench-scale-")
    try:
        # The servers' keys and certificates and the driver's operator key.
        pool = lab_pool(ROAMCTL, os.path.join(workdir, "keys"))
    except (RuntimeError, OSError) as e:
        note("lab pool (%s): %s" % (ROAMCTL, e))
        subprocess.run(["rm", "-rf", workdir])
        return 1
    result = {"bench": "scale", "connections": n, "connections_wanted": n_wanted, "n_capped_by_nofile": capped,
              "rlimit_nofile": nofile, "reps": args.reps, "window": args.window, "cpus": os.cpu_count(),
              "quick": args.quick}
    kernel, big, small, carriers = [], [], [], None
    errors = []
    t_run = mono()
    try:
        for rep in range(args.reps):
            note("rep %d/%d: kernel reference, %d direct connections" % (rep + 1, args.reps, n))
            try:
                kernel.append(phase_kernel(args, workdir, n))
                k = kernel[-1]
                note("  opened %d in %s s; kernel %s bytes per connection pair (slab objects + TCP mem)" % (
                    k["opened"], fmt(k.get("open_s")), fmt(k.get("bytes_per_pair"))))
            except Exception as e:  # noqa: BLE001: a phase's failure is a result, not a crash
                errors.append("kernel: %r" % e)
                note("  kernel phase failed: %r" % e)
            note("rep %d/%d: %d connections through roam-client, then moved A -> B" % (rep + 1, args.reps, n))
            try:
                big.append(phase_big(args, workdir, pool, n, rep))
            except Exception as e:  # noqa: BLE001
                errors.append("big: %r" % e)
                note("  phase failed: %r" % e)
            if n != 1000 and not args.quick:
                note("rep %d/%d: 1000 connections moved A -> B" % (rep + 1, args.reps))
                try:
                    small.append(phase_big(args, workdir, pool, 1000, rep))
                except Exception as e:  # noqa: BLE001
                    errors.append("move1000: %r" % e)
                    note("  phase failed: %r" % e)
        if not args.skip_carriers:
            note("carriers: through roam-client until the first failure (cap %d, %g s)" % (args.carriers_cap,
                                                                                           args.carriers_time))
            try:
                carriers = phase_carriers(args, workdir, pool)
                note("  reached %d carriers (%s) in %s s; first failure %s" % (
                    carriers["reached"], carriers["stopped_by"], carriers["elapsed_s"], carriers["first_failure"]))
            except Exception as e:  # noqa: BLE001
                errors.append("carriers: %r" % e)
                note("  phase failed: %r" % e)
    finally:
        if not args.keep_logs and not errors:
            subprocess.run(["rm", "-rf", workdir])
        else:
            result["logs"] = workdir

    # ---- figures
    def big_fig(runs, key, sub=None):
        vals = []
        for r in runs:
            v = r.get(sub, {}).get(key) if sub else r.get(key)
            vals.append(v)
        return median(vals)

    tag = str(n)
    result["open_s_" + tag] = rnd(big_fig(big, "open_s"))
    result["open_s_%s_kernel" % tag] = rnd(median([k.get("open_s") for k in kernel]))
    result["opened_" + tag] = min([r.get("opened", 0) for r in big]) if big else 0
    result["opened_%s_kernel" % tag] = min([k.get("opened", 0) for k in kernel]) if kernel else 0
    for key in ("client_bytes_per_idle_conn", "server_bytes_per_idle_conn", "client_pss_bytes_per_idle_conn",
                "server_pss_bytes_per_idle_conn", "client_heap_bytes_per_idle_conn", "server_heap_bytes_per_idle_conn"):
        result[key] = rnd(big_fig(big, key), 1)
    result["client_memory_source"] = big[0].get("client_memory_source") if big else None
    result["server_memory_source"] = big[0].get("server_memory_source") if big else None
    kpair = median([k.get("bytes_per_pair") for k in kernel])
    result["kernel_bytes_per_conn_pair"] = rnd(kpair, 1)
    result["kernel_bytes_per_socket"] = rnd(kpair / 2, 1) if kpair is not None else None
    result["kernel_meminfo_slab_bytes_per_conn_pair"] = rnd(median([k.get("meminfo_slab_bytes_per_pair")
                                                                    for k in kernel]), 1)
    moves = {tag: [r.get("move", {}) for r in big]}
    if n != 1000:
        moves["1000"] = [r.get("move", {}) for r in small]
    for m_tag, runs in moves.items():
        result["move_ms_" + m_tag] = rnd(median([m.get("move_ms") for m in runs]), 1) if runs else None
        result["move_reply_ms_" + m_tag] = rnd(median([m.get("move_reply_ms") for m in runs]), 1) if runs else None
        for q in (50, 90):
            vals = [m.get("echo_p%d_ms" % q) for m in runs]
            result["move_echo_p%d_ms_%s" % (q, m_tag)] = rnd(median(vals), 1) if runs and None not in vals else None
        result["server_cpu_ms_move_" + m_tag] = rnd(median([(m.get("cpu_ms") or {}).get("b") for m in runs]
                                                           if runs and all(m.get("move_ms") is not None for m in runs)
                                                           else []), 1)
        result["old_server_cpu_ms_move_" + m_tag] = rnd(median([(m.get("cpu_ms") or {}).get("a") for m in runs]), 1)
        result["client_cpu_ms_move_" + m_tag] = rnd(median([(m.get("cpu_ms") or {}).get("c") for m in runs]), 1)
        result["moved_" + m_tag] = min([m.get("moved", 0) for m in runs]) if runs else 0
        result["echoed_after_move_" + m_tag] = min([m.get("echoed", 0) for m in runs]) if runs else 0
        result["closed_after_move_" + m_tag] = max([sum((m.get("echo_failures") or {}).values()) for m in runs]) \
            if runs else 0
    for m_tag in ("1000", "10000"):
        result.setdefault("move_ms_" + m_tag, None)
        result.setdefault("server_cpu_ms_move_" + m_tag, None)
    result.setdefault("open_s_10000", None)
    result.setdefault("open_s_10000_kernel", None)
    if carriers:
        result["max_carriers_client"] = carriers["reached"]
        result["max_carriers_stopped_by"] = carriers["stopped_by"]
        result["max_carriers_first_failure"] = carriers["first_failure"]
        result["max_carriers_cap"] = carriers["cap"]
        result["max_carriers_cap_wanted"] = cap_wanted
        result["max_carriers_elapsed_s"] = carriers["elapsed_s"]
        result["max_carriers_client_rss_limit_mib"] = args.carriers_max_rss_mib
        result["max_carriers_client_exit"] = carriers.get("exit_codes", {}).get("client")
    else:
        result["max_carriers_client"] = None

    def ratio(a, b):
        return round(a / b, 3) if a is not None and b not in (None, 0) else None

    result["ratio_client_bytes_vs_kernel_socket"] = ratio(result["client_bytes_per_idle_conn"],
                                                          result["kernel_bytes_per_socket"])
    result["ratio_server_bytes_vs_kernel_socket"] = ratio(result["server_bytes_per_idle_conn"],
                                                          result["kernel_bytes_per_socket"])
    result["ratio_open_vs_kernel_" + tag] = ratio(result["open_s_" + tag], result["open_s_%s_kernel" % tag])
    result["details"] = {"kernel": kernel, "big": big, "move1000": small, "carriers": carriers}
    result["errors"] = errors
    result["run_s"] = round(mono() - t_run, 1)

    # ---- human-readable summary, then the JSON line
    print("scale: N=%d (%s), window %d, reps %d, %.0f s" % (n, "quick" if args.quick else "full", args.window,
                                                             args.reps, result["run_s"]))
    for key in ("open_s_" + tag, "open_s_%s_kernel" % tag, "ratio_open_vs_kernel_" + tag, "client_bytes_per_idle_conn",
                "server_bytes_per_idle_conn", "client_heap_bytes_per_idle_conn", "server_heap_bytes_per_idle_conn",
                "kernel_bytes_per_socket", "ratio_client_bytes_vs_kernel_socket", "ratio_server_bytes_vs_kernel_socket",
                "move_ms_1000", "move_reply_ms_1000", "move_echo_p50_ms_1000", "server_cpu_ms_move_1000") + (
                () if tag == "1000" else ("move_ms_" + tag, "move_reply_ms_" + tag, "move_echo_p50_ms_" + tag,
                                          "echoed_after_move_" + tag, "closed_after_move_" + tag,
                                          "server_cpu_ms_move_" + tag, "old_server_cpu_ms_move_" + tag,
                                          "client_cpu_ms_move_" + tag)) + (
                "max_carriers_client",):
        print("  %-40s %s" % (key, result.get(key)))
    if carriers:
        print("  carriers: %s after %s s; first failure %s" % (carriers["stopped_by"], carriers["elapsed_s"],
                                                                carriers["first_failure"]))
        for line in carriers.get("client_log", []):
            print("    client: " + line)
    for e in errors:
        print("  error: " + e)
    print(json.dumps(result, separators=(",", ":")))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
