"""The proxy topology in a lab (issue 12), shared by the real-application tests
(proxy_ssh_test.py, proxy_http_test.py, proxy_iperf_test.py, proxy_dead_test.py,
proxy_resume_test.py) and tools/bench/proxy_bench.py. The lab is `tools/netns/topology up
NAME --origin` with the strict NAT (tools/netns/nat on NAME) in the router:

  c   roam-client on rtun0 (198.18.11.2), -L 127.0.0.1:9000:198.18.12.2:7000; the
      applications (ssh, scp, curl, iperf3, python clients) run here, behind the NAT
  r   the strict NAT (masquerade, conntrack be_liberal=0); roamctl runs here
  s   proxy A: roam-server proxy on rtun0 (198.18.12.2), control 198.18.2.1:7100
  s2  proxy B: roam-server proxy on rtun0 (198.18.13.2), control 198.18.3.1:7100
  o   the origin: roam-server relay --backend 127.0.0.1:PORT on rtun0 (198.18.14.2),
      beside the real service (sshd, nginx, iperf3 -s, a python backend) on 127.0.0.1

All four roam processes are members of one lab pool (tools/lab_keys.py); roamctl uses its
operator key. Moves alternate A -> B, B -> A (`roamctl migrate --from A --to B`).

PROXY_LAB_MODE=relay (development only, no moves): the client forwards straight to the
origin's relay (198.18.14.2:7000) and no proxy runs; it checks the namespaces, the NAT and
the services' plumbing alone. The tests skip (77) only when a tool they drive is missing.

ROAMSTACK_TEST_SCALE (default 1.0) scales the big transfers (scaled()).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import NAT, ROAM_CLIENT, ROAM_SERVER, ROAMCTL, TOPOLOGY, Failure, log  # noqa: E402
from netns_lab import run_tool, wait_until  # noqa: E402

MIB = 1 << 20
CLIENT_LWIP = "198.18.11.2"
ORIGIN_LWIP = "198.18.14.2"
ORIGIN_KERNEL = "198.18.4.1"
ORIGIN_CONTROL = "198.18.4.1:7100"
PROXIES = {  # name: (namespace role, lwIP address, control)
    "a": ("s", "198.18.12.2", "198.18.2.1:7100"),
    "b": ("s2", "198.18.13.2", "198.18.3.1:7100"),
}
LPORT = 9000
MOVED_RE = re.compile(r"ok moved (\d+) of (\d+)")
STATUS_KEYS = ("sessions", "exports", "imports", "parked", "unparked", "moves", "registrations", "acms",
               "handover_syns", "owner_syns", "channels_failed", "peer", "proxy", "origin", "keepalive", "dead")


def scale():
    try:
        value = float(os.environ.get("ROAMSTACK_TEST_SCALE", "1.0"))
    except ValueError:
        value = 1.0
    return value if value > 0 else 1.0


def scaled(nbytes, minimum=4 * MIB):
    """nbytes times ROAMSTACK_TEST_SCALE, at least `minimum`, a multiple of 64 KiB."""
    return max(minimum, int(nbytes * scale())) // (64 * 1024) * (64 * 1024)


def mode():
    return os.environ.get("PROXY_LAB_MODE", "proxy")


def require(*tools):
    """Skips the test (exit 77) with a message when a tool binary is missing."""
    for tool in tools:
        if shutil.which(tool) is None and not os.path.exists(tool):
            print("SKIP: %s is not installed (tools/setup installs it)" % tool)
            sys.exit(77)


class ProxyLab:
    """The roam processes of the proxy topology in `lab` (a netns_lab.Lab made with
    up_args=["--origin"]), for one backend port on the origin's loopback."""

    def __init__(self, lab, backend_port, backend_host="127.0.0.1"):
        self.lab = lab
        self.backend = "%s:%d" % (backend_host, backend_port)
        self.at = "a"  # where the client's connections are (the proxy that serves them)
        self.moves = []  # (source, target, stdout, roamctl wall ms, moved, of)
        self.follows = 0
        self.labels = []

    def nat(self, *args):
        out = subprocess.run([NAT, args[0], self.lab.name] + list(args[1:]), capture_output=True, text=True)
        if out.returncode != 0:
            raise Failure("nat %s: %s" % (" ".join(args), out.stderr.strip()))
        return out.stdout

    def start(self, client_args=(), origin_args=(), proxy_args=()):
        """origin_args / proxy_args: extra roam-server options of the relay / of both proxies."""
        lab, pool = self.lab, self.lab.pool()
        self.nat("on")
        link = ["--link", "tun:rtun0"]
        lab.start("origin", "o", [ROAM_SERVER] + link + ["--addr", ORIGIN_LWIP, "--control", ORIGIN_CONTROL]
                  + pool.server_args("origin") + list(origin_args) + ["relay", "--backend", self.backend])
        self.labels.append("origin")
        # The origin first: a proxy opens its control channel to the origin at once, and a
        # SYN that finds no origin yet is retried only after lwIP's 3 s; until that channel
        # is up, the proxy's origin legs wait (no owner proof) and its sessions cannot move.
        lab.wait_log("origin", "interface up")
        target = ORIGIN_LWIP
        if mode() != "relay":
            for name, (role, addr, control) in PROXIES.items():
                lab.start("proxy_" + name, role, [ROAM_SERVER] + link + ["--addr", addr, "--control", control]
                          + pool.server_args("proxy_" + name) + list(proxy_args)
                          + ["proxy", "--origin", ORIGIN_LWIP + ":7000"])
                self.labels.append("proxy_" + name)
            for name in PROXIES:
                lab.wait_log("proxy_" + name, "control channel to %s ('%s') established" % (ORIGIN_LWIP, ORIGIN_LWIP))
            target = PROXIES["a"][1]
        lab.start("client", "c", [ROAM_CLIENT] + link + ["--addr", CLIENT_LWIP, "-L", "127.0.0.1:%d:%s:7000" % (
            LPORT, target)] + list(client_args))
        self.labels.insert(0, "client")
        lab.wait_log("client", "interface up")
        log("ok   - lab up (%s mode): client behind the strict NAT -> %s -> origin %s -> backend %s" % (
            mode(), "proxy A" if mode() != "relay" else "relay", ORIGIN_LWIP, self.backend))

    def client_log(self):
        return self.lab.log_text("client")

    def migrate(self, want_moved=1):
        """One move of the proxy that holds the client's connections to the other; checks
        "ok moved N of N" with N >= want_moved; returns (stdout, wall ms). In relay mode:
        nothing (returns None). When the proxy it thinks holds them has none ("ok moved 0
        of 0": e.g. new connections went to the other one), it moves the other way once."""
        if mode() == "relay":
            return None
        # A connection that arrived by the previous move is parked until the client follows.
        wait_until(lambda: self.client_log().count("connection(s) follow (ACM") >= self.follows, 30,
                   "the client following move %d" % len(self.moves))
        follows = self.client_log().count("connection(s) follow (ACM")
        for attempt in (1, 2):
            source = self.at
            target = "b" if source == "a" else "a"
            t0 = time.monotonic()
            out = self.lab.run_in("r", [ROAMCTL, "migrate", "--from", PROXIES[source][2], "--to",
                                        PROXIES[target][2]], timeout=90)
            ms = (time.monotonic() - t0) * 1000
            m = MOVED_RE.match(out.stdout)
            if attempt == 1 and want_moved and m and m.group(2) == "0":
                log("#    proxy %s holds no session: moving from %s instead" % (source, target))
                self.at = target
                continue
            break
        if out.returncode != 0 or not m or m.group(1) != m.group(2) or int(m.group(1)) < want_moved:
            raise Failure("move %d %s -> %s: want 'ok moved N of N', N >= %d; got %s %s" % (
                len(self.moves) + 1, source, target, want_moved, out.stdout.strip(), out.stderr.strip()))
        moved = int(m.group(1))
        self.moves.append((source, target, out.stdout.strip(), ms, moved, int(m.group(2))))
        if moved:
            self.at = target
            self.follows = follows + 1
        return out.stdout.strip(), ms

    def status(self, name):
        control = ORIGIN_CONTROL if name == "origin" else PROXIES[name][2]
        try:
            out = self.lab.run_in("r", [ROAMCTL, "status", "--server", control], timeout=30)
        except subprocess.TimeoutExpired:
            return "(no answer within 30 s)"
        return out.stdout.strip() or out.stderr.strip()

    def status_json(self, name):
        """roamctl status of `name` as a dict; {} when it does not answer with JSON."""
        try:
            return json.loads(self.status(name))
        except ValueError:
            return {}

    def sessions(self):
        """{proxy: sessions} from roamctl status (0 when it does not answer)."""
        return {name: self.status_json(name).get("sessions", 0) for name in PROXIES}

    def holder(self):
        """The proxy ("a" or "b") whose status shows sessions, the one it thinks first."""
        for name in (self.at, "b" if self.at == "a" else "a"):
            if self.status_json(name).get("sessions", 0) > 0:
                return name
        return self.at

    def stop(self):
        self.lab.stop_cleanly([label for label in self.labels if self.lab.procs[label].poll() is None])

    def evidence(self):
        """Log tails of the roam processes and roamctl status, for a failure message."""
        parts = []
        for label in self.labels:
            try:
                parts.append("== %s (tail)\n%s" % (label, "\n".join(self.lab.log_text(label).splitlines()[-15:])))
            except OSError as e:
                parts.append("== %s: %s" % (label, e))
        if mode() != "relay":
            for name in ("a", "b", "origin"):
                text = self.status(name)
                try:  # the counters that tell where sessions are and what became of moves
                    st = json.loads(text)
                    text = " ".join("%s=%s" % (k, v) for k, v in st.items() if (v or k == "sessions") and k.startswith(STATUS_KEYS))
                except ValueError:
                    pass
                parts.append("== roamctl status %s\n%s" % (name, text))
        try:
            parts.append("== nat counters\n" + self.nat("counters"))
        except Failure as e:
            parts.append("== nat counters: %s" % e)
        return "\n".join("#   " + line for line in "\n".join(parts).splitlines())


class Mover(threading.Thread):
    """Moves the proxy every `interval` seconds (A -> B, B -> A, ...) until stop() or
    `limit` moves, the first once a proxy holds a session (roamctl status, at most 60 s
    of waiting); a failed move is kept in .error and ends the thread. active(), when
    given, says whether the application is still running: a move that fails (e.g. "ok
    moved 0 of 0") while the application ends (within 5 s) is not an error: it came too
    late, and the mover stops."""

    def __init__(self, plab, interval, limit=None, want_moved=1, active=None):
        super().__init__(daemon=True)
        self.plab = plab
        self.interval = interval
        self.limit = limit
        self.want_moved = want_moved
        self.active = active
        self.error = None
        self.done = []  # (monotonic time, stdout, ms)
        self._halt = threading.Event()

    def run(self):
        if mode() != "relay":  # the first move once the application's connection is at a proxy
            deadline = time.monotonic() + 60
            while not any(self.plab.sessions().values()) and time.monotonic() < deadline:
                if self._halt.wait(0.2) or (self.active and not self.active()):
                    return
        while not self._halt.wait(self.interval):
            if self.limit is not None and len(self.done) >= self.limit:
                return
            if self.active and not self.active():
                return
            try:
                result = self.plab.migrate(self.want_moved)
            except Failure as e:
                deadline = time.monotonic() + 5
                while self.active and self.active() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self.active and not self.active():
                    log("#    a move as the application ended, not counted: %s" % e)
                    return
                self.error = e
                return
            if result is None:
                return
            self.done.append((time.monotonic(), result[0], result[1]))
            log("#    move %d: %s (roamctl %.1f ms)" % (len(self.done), result[0], result[1]))

    def stop(self):
        self._halt.set()
        self.join(120)
        if self.error:
            raise self.error
        return self.done


def spawn_in(lab, role, argv, stdin=True):
    """A process in namespace `role` with piped stdout (text); the caller ends it."""
    return subprocess.Popen([TOPOLOGY, "exec", lab.name, role] + argv, stdin=subprocess.PIPE if stdin else None,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Lines(threading.Thread):
    """Collects a process's stdout lines."""

    def __init__(self, proc):
        super().__init__(daemon=True)
        self.proc = proc
        self.lines = []
        self.start()

    def run(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def last(self, prefix):
        for line in reversed(self.lines):
            if line.startswith(prefix):
                return line
        return None


def end(proc, grace=10):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def remove(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_seeded(path, size, seed):
    """Writes `size` seeded pseudo-random bytes to path; returns their SHA-256."""
    import hashlib
    import random
    rng, h = random.Random(seed), hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            data = rng.randbytes(min(16 * MIB, left))
            h.update(data)
            f.write(data)
            left -= len(data)
    return h.hexdigest()


# ---------------------------------------------------------------- HTTP downloads
# (proxy_http_test.py, proxy_resume_test.py): a real HTTP server in namespace o on
# 127.0.0.1:HTTP_PORT, fetched with curl from namespace c through the forward (LPORT).

HTTP_PORT = 8080

# In namespace c: curl URL piped into a hash, at RATE bytes/s; prints "progress N" every
# STEP bytes and "done N SHA curl RC http CODE". PACING "curl": curl's --limit-rate (it
# catches up after a stall); "reader": the hash reads at most RATE bytes/s and never
# catches up (netns_proxy_resume: the download goes on well after a resume).
FETCH = r"""
import hashlib, subprocess, sys, time
url, rate, pacing, step = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
limit = ["--limit-rate", str(rate)] if pacing == "curl" else []
curl = subprocess.Popen(["curl", "-sS", "--fail"] + limit + ["-o", "-", "-w", "%{stderr}http %{http_code}\n", url],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
h, n, mark = hashlib.sha256(), 0, 0
while True:
    d = curl.stdout.read1(1 << 16) if pacing == "reader" else curl.stdout.read(1 << 20)
    if not d:
        break
    if pacing == "reader":
        time.sleep(len(d) / rate)
    h.update(d)
    n += len(d)
    if n - mark >= step:
        mark = n
        print("progress", n, flush=True)
err = curl.stderr.read().decode(errors="replace").strip().splitlines()
rc = curl.wait()
code = [l.split()[1] for l in err if l.startswith("http ")]
print("curl said:", " | ".join(l for l in err if not l.startswith("http ")), flush=True)
print("done", n, h.hexdigest(), "curl", rc, "http", code[0] if code else "?", flush=True)
"""


def nginx_conf(workdir, root):
    d = os.path.join(workdir, "nginx")
    os.makedirs(d)
    conf = os.path.join(d, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""daemon off;
master_process on;
worker_processes 1;
user root;
pid %(d)s/nginx.pid;
error_log stderr notice;
events { worker_connections 64; }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    client_body_temp_path %(d)s/body;
    proxy_temp_path %(d)s/proxy;
    fastcgi_temp_path %(d)s/fastcgi;
    uwsgi_temp_path %(d)s/uwsgi;
    scgi_temp_path %(d)s/scgi;
    server {
        listen 127.0.0.1:%(port)d;
        root %(root)s;
    }
}
""" % {"d": d, "port": HTTP_PORT, "root": root})
    return ["nginx", "-p", d, "-c", conf, "-e", "stderr"]


def start_http_origin(lab, www):
    """Starts the HTTP server as process "http" in namespace o, serving directory `www` on
    127.0.0.1:HTTP_PORT: nginx (nginx_conf) when installed, else python3 -m http.server.
    Returns (server name, the log line that says it is ready, for lab.wait_log("http", ...))."""
    if shutil.which("nginx"):
        lab.start("http", "o", nginx_conf(lab.workdir, www))
        return "nginx", "start worker process"
    lab.start("http", "o", [sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "--directory", www,
                            str(HTTP_PORT)])
    return "python3 http.server", "Serving HTTP"


def spawn_fetch(lab, path, rate, pacing, step):
    """Starts FETCH in namespace c on http://127.0.0.1:LPORT/path (through the forward) at
    `rate` bytes/s with PACING "curl" or "reader", a progress line every `step` bytes;
    returns (the process, Lines of its output)."""
    fetch = spawn_in(lab, "c", [sys.executable, "-c", FETCH, "http://127.0.0.1:%d/%s" % (LPORT, path), str(rate), pacing,
                                str(step)],
                     stdin=False)
    return fetch, Lines(fetch)


def check_download(fetch, out, size, want):
    """After FETCH ended: its "done" line must say curl exit 0, HTTP 200, `size` bytes of
    SHA-256 `want`; raises Failure otherwise. Returns the "done" line."""
    out.join(10)
    done = out.last("done")
    if not done:
        raise Failure("the fetcher exited %s: %s" % (fetch.returncode, out.lines[-5:]))
    _, count, digest, _, rc, _, code = done.split()
    log("#    %s; %s" % (out.last("curl said:"), done))
    if rc != "0" or code != "200":
        raise Failure("curl exit %s, HTTP %s after %s bytes" % (rc, code, count))
    if int(count) != size or digest != want:
        raise Failure("downloaded %s bytes, sha256 %s; want %d, %s" % (count, digest, size, want))
    return done


# A backend for the origin (python3, kernel TCP on 0.0.0.0:PORT in namespace o): sends
# b"h" at once on every connection, then reads one command line:
#   "IDLE"               holds the connection, reading until EOF
#   "STREAM N SEED RATE" sends N bytes of random.Random(SEED) (RATE bytes/s, 0 unpaced), closes
#   "BLAST N SEED"       sends N bytes: random.Random(SEED).randbytes(1 MiB) over and over, closes
#   "SINK"               reads and discards until EOF, then answers the byte count
#   "ECHO"               sends every byte back until EOF
# It prints "accepted", "closed K reason" per connection (for dead-peer checks).
BACKEND = r"""
import random, socket, sys, threading, time
srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", int(sys.argv[1])))
srv.listen(256)
print("listening", flush=True)
count = [0]

def serve(c, k):
    reason = "eof"
    try:
        c.sendall(b"h")
        line = b""
        while not line.endswith(b"\n"):
            d = c.recv(1)
            if not d:
                raise EOFError
            line += d
        words = line.split()
        if words[0] == b"IDLE":
            while c.recv(65536):
                pass
        elif words[0] == b"STREAM":
            n, seed, rate = int(words[1]), int(words[2]), int(words[3])
            rng, sent, t0 = random.Random(seed), 0, time.monotonic()
            while sent < n:
                d = rng.randbytes(min(65536, n - sent))
                c.sendall(d)
                sent += len(d)
                if rate:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass
        elif words[0] == b"BLAST":
            n, block = int(words[1]), random.Random(int(words[2])).randbytes(1 << 20)
            view, sent = memoryview(block), 0
            while sent < n:
                k = min(len(block), n - sent)
                c.sendall(view[:k])
                sent += k
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass
        elif words[0] == b"ECHO":
            while True:
                d = c.recv(65536)
                if not d:
                    break
                c.sendall(d)
        elif words[0] == b"SINK":
            n = 0
            while True:
                d = c.recv(1 << 20)
                if not d:
                    break
                n += len(d)
            c.sendall(b"%d\n" % n)
    except EOFError:
        pass
    except OSError as e:
        reason = "error %s" % e.__class__.__name__
    finally:
        c.close()
    print("closed", k, reason, flush=True)

while True:
    c, _ = srv.accept()
    count[0] += 1
    print("accepted", count[0], flush=True)
    threading.Thread(target=serve, args=(c, count[0]), daemon=True).start()
"""
