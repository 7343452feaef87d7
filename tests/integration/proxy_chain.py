"""The proxy topology for integration tests (DESIGN.md section 2), on UDP links on loopback:

  kernel app -> roam-client -L -> proxy A (roam-server proxy --origin)  -> origin (roam-server
                                  [proxy B, the same, for moves]            relay --backend)
                                                                          -> CommandBackend

  client 198.18.11.2   A 198.18.12.2   B 198.18.13.2   origin 198.18.14.2
  (ipv6=True: each also 2001:db8:NN::2; the forward and --origin then use IPv6, and the
  origin has IPv6 routes only)

The kernel backend (CommandBackend, 127.0.0.1) is told what to do by the first line each
connection carries, so one backend serves every case and ignores the harness's readiness
probe (a connection that closes before its line):

  bulk ID SIZE SEED RATE   send SIZE seeded bytes while reading to EOF (at most RATE bytes/s,
                           0: unpaced); then close
  reply ID SIZE SEED       read to EOF first, then send SIZE seeded bytes and close (the
                           client's half-close must reach us while the way back stays open)
  first ID SIZE SEED       send SIZE seeded bytes and shutdown(SHUT_WR) at once, then read to
                           EOF (our half-close must reach the client while its way stays open)
  reset ID SIZE SEED       send SIZE seeded bytes, then close with a reset (SO_LINGER 0)

Each connection's record (bytes and SHA-256 received after the line, sent, errors) is kept
by ID. Every process is reaped by the harness even on failure.
"""
import hashlib
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check  # noqa: E402

ADDRESS = {"client": "198.18.11.2", "A": "198.18.12.2", "B": "198.18.13.2", "origin": "198.18.14.2"}
NET = {"client": "198.18.11.0/24", "A": "198.18.12.0/24", "B": "198.18.13.0/24", "origin": "198.18.14.0/24"}
ADDRESS6 = {"client": "2001:db8:11::2", "A": "2001:db8:12::2", "B": "2001:db8:13::2", "origin": "2001:db8:14::2"}
NET6 = {"client": "2001:db8:11::/48", "A": "2001:db8:12::/48", "B": "2001:db8:13::/48",
        "origin": "2001:db8:14::/48"}
CARRIER_PORT = 7000


def seeded(seed, size):
    return harness.pseudo_random_bytes(seed, size)


class CommandBackend(harness.KernelBackend):
    def __init__(self):
        self.records = {}
        super().__init__(backlog=64)
        self.changed = threading.Condition(self.lock)

    def serve(self, conn):
        conn.settimeout(harness.IO_TIMEOUT)
        line = b""
        try:
            while not line.endswith(b"\n") and len(line) < 256:
                part = conn.recv(1)
                if not part:
                    conn.close()  # the readiness probe, or a client that gave up
                    return
                line += part
        except OSError:
            conn.close()
            return
        words = line.decode("ascii", "replace").split()
        command, ident = words[0], words[1]
        size, seed = int(words[2]), int(words[3])
        rate = int(words[4]) if len(words) > 4 else 0
        record = {"command": command, "received": 0, "sha256": None, "sent": 0, "error": None, "done": False,
                  "eof_before_send": False}
        with self.lock:
            self.records[ident] = record
        try:
            if command == "bulk":
                sender = harness.Worker(self._send, conn, seeded(seed, size), False, name="backend-send")
                sender.start()
                self._read(conn, record, rate)
                record["sent"] = sender.finish()
            elif command == "reply":
                self._read(conn, record, 0)
                record["eof_before_send"] = True
                record["sent"] = self._send(conn, seeded(seed, size), False)
            elif command == "first":
                record["sent"] = self._send(conn, seeded(seed, size), True)
                self._read(conn, record, 0)
            elif command == "reset":
                record["sent"] = self._send(conn, seeded(seed, size), False)
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, TestFailure) as e:
            record["error"] = repr(e)
        conn.close()
        with self.lock:
            record["done"] = True
            self.changed.notify_all()

    @staticmethod
    def _send(conn, data, shutdown):
        view = memoryview(data)
        for offset in range(0, len(view), 256 << 10):
            conn.sendall(view[offset:offset + (256 << 10)])
        if shutdown:
            conn.shutdown(socket.SHUT_WR)
        return len(data)

    @staticmethod
    def _read(conn, record, rate):
        digest = hashlib.sha256()
        buf = bytearray(64 << 10 if rate else 1 << 20)
        started = time.monotonic()
        while True:
            if rate:
                ahead = record["received"] / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            n = conn.recv_into(buf)
            if n == 0:
                break
            digest.update(memoryview(buf)[:n])
            record["received"] += n
        record["sha256"] = digest.hexdigest()

    def wait(self, ident, timeout=harness.IO_TIMEOUT):
        """The record of connection ID once the backend is done with it."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not (ident in self.records and self.records[ident]["done"]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure("backend: connection %s not done within %.0f s: %r"
                                      % (ident, timeout, self.records.get(ident)))
                self.changed.wait(min(remaining, 1.0))
            return dict(self.records[ident])


class ProxyChain(harness._Topology):
    """An origin, one or two proxies (A, B) and a client whose forward targets A.

    origin: False starts no origin process (its UDP port stays closed: unreachable).
    origin_port: the port the proxies are told (--origin), default the origin's carrier port.
    control: give the proxies --control ports and the lab pool's keys (for moves)."""

    def __init__(self, backend, ipv6=False, proxies=("A",), origin=True, origin_port=CARRIER_PORT,
                 control=False, proxy_extra=(), client_extra=()):
        self.backend = backend
        self.ipv6 = ipv6
        self.proxy_names = list(proxies)
        self.run_origin = origin
        self.origin_port = origin_port
        self.control = control
        self.proxy_extra = list(proxy_extra)
        self.client_extra = list(client_extra)
        self.origin = None
        self.proxies = {}
        self.client = None
        self.udp = {}
        self.controls = {}
        self.forward_port = None

    def _processes(self):
        return [p for p in [self.client] + [self.proxies.get(n) for n in self.proxy_names] + [self.origin]
                if p is not None]

    def _node_args(self, name, peers):
        argv = ["--link", "udp:127.0.0.1:%d" % self.udp[name], "--addr", ADDRESS[name]]
        # Debugging an intermittent failure: ROAM_TEST_PCAP_DIR keeps every node's link traffic.
        if os.environ.get("ROAM_TEST_PCAP_DIR"):
            argv += ["--pcap", os.path.join(os.environ["ROAM_TEST_PCAP_DIR"], name + ".pcap")]
        if self.ipv6:
            argv += ["--addr6", ADDRESS6[name]]
        for peer in peers:
            # With ipv6 the origin has no IPv4 route: an origin leg over IPv4 could not work.
            if not (self.ipv6 and name == "origin"):
                argv += ["--route", "%s=127.0.0.1:%d" % (NET[peer], self.udp[peer])]
            if self.ipv6:
                argv += ["--route", "%s=127.0.0.1:%d" % (NET6[peer], self.udp[peer])]
        return argv

    def origin_text(self):
        host = "[%s]" % ADDRESS6["origin"] if self.ipv6 else ADDRESS["origin"]
        return "%s:%d" % (host, self.origin_port)

    def _start_process(self, role, name, argv, ready):
        proc = harness.RoamProcess(role, argv, name="%s-%d" % (name, harness.RoamProcess._serial + 1))
        if not proc.wait_for_log(ready):
            if harness._bind_failed(proc):
                return proc, False
            raise TestFailure("%s did not start (%s)\n  %s\n%s" % (name, proc.exit_status(), proc.describe(),
                                                                   proc.tail()))
        return proc, True

    def start(self):
        for _ in range(5):
            self.udp = {n: harness.free_udp_port() for n in ["client", "origin"] + self.proxy_names}
            self.controls = {n: "127.0.0.1:%d" % harness.free_tcp_port() for n in self.proxy_names + ["origin"]}
            self.forward_port = harness.free_tcp_port()
            self.origin, self.proxies, self.client = None, {}, None
            ok = True
            if self.run_origin:
                argv = [harness.ROAM_SERVER] + self._node_args("origin", self.proxy_names)
                if self.control:  # for its status: the origin moves nothing itself
                    argv += ["--control", self.controls["origin"]] + harness.lab_pool().server_args("origin")
                argv += ["relay", "--backend", "127.0.0.1:%d" % self.backend.port]
                self.origin, ok = self._start_process("server", "origin", argv, "[app] serving ")
            for name in self.proxy_names:
                if not ok:
                    break
                argv = [harness.ROAM_SERVER] + self._node_args(name, ["client", "origin"])
                if self.control:
                    argv += ["--control", self.controls[name]] + harness.lab_pool().server_args(name)
                argv += self.proxy_extra + ["proxy", "--origin", self.origin_text()]
                self.proxies[name], ok = self._start_process("server", "proxy-" + name, argv, "[app] serving ")
            if ok:
                server = "[%s]" % ADDRESS6["A"] if self.ipv6 else ADDRESS["A"]
                argv = [harness.ROAM_CLIENT] + self._node_args("client", self.proxy_names) + \
                    ["-L", "127.0.0.1:%d:%s:%d" % (self.forward_port, server, CARRIER_PORT)] + self.client_extra
                self.client, ok = self._start_process("client", "client", argv, "[app] forwarding ")
            if not ok:
                for proc in self._processes():
                    proc.stop(check_exit=not harness._bind_failed(proc))
                continue
            harness.wait_for_tcp(self.forward_port, harness.READY_TIMEOUT, self.client)
            return self
        raise TestFailure("could not find free ports after 5 attempts")

    def connect(self, command, timeout=harness.IO_TIMEOUT):
        """A kernel connection through the chain whose backend end runs `command` (a line)."""
        sock = socket.create_connection(("127.0.0.1", self.forward_port), timeout=timeout)
        sock.settimeout(timeout)
        sock.sendall(command.encode("ascii") + b"\n")
        return sock

    def rss_bytes(self, name):
        """Resident memory of proxy NAME now (from /proc)."""
        with open("/proc/%d/status" % self.proxies[name].pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise TestFailure("no VmRSS for proxy %s" % name)

    def migrate(self, source, destination):
        return harness.roamctl("migrate", "--from", self.controls[source], "--to", self.controls[destination])

    def status(self, name):
        import json
        result = harness.roamctl("status", "--server", self.controls[name])
        try:
            value = json.loads(result.stdout.strip())
        except ValueError:
            value = None
        check(result.returncode == 0 and isinstance(value, dict),
              "roamctl status %s: exit %d, stdout %r, stderr %r" % (name, result.returncode, result.stdout,
                                                                    result.stderr))
        return value

    def wait_for_sessions(self, name, want, timeout=harness.READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while True:
            got = self.status(name)["sessions"]
            if got == want:
                return
            if time.monotonic() > deadline:
                raise TestFailure("proxy %s holds %d sessions, expected %d" % (name, got, want))
            time.sleep(0.05)

    def tails(self):
        return "\n".join("  %s:\n%s" % (p.describe(), p.tail(15)) for p in self._processes())

    def stop_all(self):
        errors = []
        for proc in self._processes():
            try:
                proc.stop()
            except TestFailure as e:
                errors.append(str(e))
        if errors:
            raise TestFailure("\n".join(errors))


def read_to_end(sock, limit=None):
    """(bytes, sha256 hex, how it ended: "eof" | "reset")."""
    digest = hashlib.sha256()
    total = 0
    while True:
        try:
            data = sock.recv(1 << 20)
        except ConnectionResetError:
            return total, digest.hexdigest(), "reset"
        except socket.timeout:
            raise TestFailure("no data and no end for %.0f s after %d bytes (hang)" % (sock.gettimeout(), total))
        if not data:
            return total, digest.hexdigest(), "eof"
        digest.update(data)
        total += len(data)
        if limit is not None and total > limit:
            raise TestFailure("received more than the %d bytes expected" % limit)


def send_all(sock, data, shutdown=True):
    view = memoryview(data)
    for offset in range(0, len(view), 256 << 10):
        sock.sendall(view[offset:offset + (256 << 10)])
    if shutdown:
        sock.shutdown(socket.SHUT_WR)
    return len(data)
