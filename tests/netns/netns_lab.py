"""Shared plumbing of the Python netns tests: one lab of namespaces (tools/netns/topology)
named after the test and its pid, processes started inside it with their output in a
work directory, and the rule that the lab and every process are gone on every exit path.

    def main(lab):
        lab.start("server_s", "s", [ROAM_SERVER, ...])
        lab.wait_log("server_s", "interface up")
        ...
    if __name__ == "__main__":
        netns_lab.run("tm", main)      # exit 0 passed, 1 failed, 77 skipped (not root)
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.environ.get("ROAMSTACK_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
TOPOLOGY = os.path.join(ROOT, "tools", "netns", "topology")
NAT = os.path.join(ROOT, "tools", "netns", "nat")
ROAM_SERVER = os.environ.get("ROAM_SERVER", os.path.join(ROOT, "build", "apps", "roam-server"))
ROAM_CLIENT = os.environ.get("ROAM_CLIENT", os.path.join(ROOT, "build", "apps", "roam-client"))
ROAMCTL = os.environ.get("ROAMCTL", os.path.join(ROOT, "build", "apps", "roamctl"))

# A kernel client inside namespace c: echo rounds on one connection, driven by stdin lines
# ("ROUND n" sends n bytes and reports whether they came back within 5 s).
ECHO_CLIENT = """
import os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
for line in sys.stdin:
    n = int(line.split()[1])
    data = os.urandom(n)
    try:
        s.sendall(data)
        got = b""
        while len(got) < n:
            chunk = s.recv(n - len(got))
            if not chunk:
                break
            got += chunk
        print("echo ok" if got == data else "echo wrong %d" % len(got), flush=True)
    except socket.timeout:
        print("echo timeout", flush=True)
"""


PACED_READER = """
import hashlib, socket, sys, time
port, name, rate = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.settimeout(60)
s.sendall((name + "\\n").encode())
h, got, mark, t0 = hashlib.sha256(), 0, 0, time.monotonic()
try:
    while True:
        data = s.recv(65536)
        if not data:
            break
        h.update(data)
        got += len(data)
        if got - mark >= 128 * 1024:
            mark = got
            print("recv", got, flush=True)
        ahead = got / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
except OSError as e:
    print("error after %d bytes: %s" % (got, e), flush=True)
    sys.exit(1)
print("done", got, h.hexdigest(), flush=True)
"""


def log(*args):
    print(*args, flush=True)


class Failure(Exception):
    pass


def run_tool(argv, what, **kwargs):
    out = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if out.returncode != 0:
        raise Failure("%s: exit %d: %s %s" % (what, out.returncode, out.stdout.strip(), out.stderr.strip()))
    return out.stdout


def wait_until(predicate, seconds, what, fail_fast=None):
    """Polls predicate() until it returns a true value; fail_fast() may return a reason to stop."""
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        reason = fail_fast() if fail_fast else None
        if reason:
            raise Failure("%s: %s" % (what, reason))
        if time.monotonic() > deadline:
            raise Failure("%s: not within %g s" % (what, seconds))
        time.sleep(0.05)


class Lab:
    def __init__(self, name, workdir):
        self.name = name
        self.workdir = workdir
        self.procs = {}
        self._pool = None

    def pool(self):
        """The lab's pool (tools/lab_keys.py): server keys and certificates by role and the
        operator key every roamctl run here uses ($ROAMCTL_KEY)."""
        if self._pool is None:
            sys.path.insert(0, os.path.join(ROOT, "tools"))
            from lab_keys import LabPool
            self._pool = LabPool(ROAMCTL, os.path.join(self.workdir, "keys"))
            os.environ["ROAMCTL_KEY"] = self._pool.operator_key
        return self._pool

    def run_in(self, role, argv, **kwargs):
        return subprocess.run([TOPOLOGY, "exec", self.name, role] + argv, capture_output=True, text=True, **kwargs)

    def start(self, label, role, argv):
        out = open(os.path.join(self.workdir, label + ".log"), "w")
        self.procs[label] = subprocess.Popen([TOPOLOGY, "exec", self.name, role] + argv, stdout=out,
                                             stderr=subprocess.STDOUT)

    def log_text(self, label):
        with open(os.path.join(self.workdir, label + ".log")) as f:
            return f.read()

    def wait_log(self, label, needle, seconds=15, count=1):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.log_text(label).count(needle) >= count:
                return
            if self.procs[label].poll() is not None:
                break
            time.sleep(0.1)
        raise Failure("%s never logged %r:\n%s" % (label, needle, self.log_text(label)[-2000:]))

    def stop_cleanly(self, labels):
        """SIGTERM each; each must exit 0 within 15 s with no sanitizer report."""
        for label in labels:
            self.procs[label].send_signal(signal.SIGTERM)
            try:
                rc = self.procs[label].wait(15)
            except subprocess.TimeoutExpired:
                raise Failure("%s did not exit within 15 s of SIGTERM" % label)
            text = self.log_text(label)
            if rc != 0 or "Sanitizer" in text or "runtime error" in text:
                raise Failure("%s exited %d:\n%s" % (label, rc, text[-2000:]))

    def kill_all(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


class PacedReader:
    """A kernel client in namespace `role` that asks 127.0.0.1:PORT for file NAME (one
    line) and reads it at RATE bytes/s (PACED_READER), its output lines collected by a
    thread: `recv N` every 128 KiB, then `done N SHA256` or `error ...`."""

    def __init__(self, lab, name, rate, port=9000, role="c"):
        self.lines = []
        self.proc = subprocess.Popen([TOPOLOGY, "exec", lab.name, role, "python3", "-c", PACED_READER, str(port),
                                      name, str(rate)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def received(self):
        for line in reversed(self.lines):
            words = line.split()
            if words and words[0] in ("recv", "done"):
                return int(words[1])
        return 0

    def failed(self):
        for line in self.lines:
            if line.startswith("error"):
                return "the reader failed: " + line
        if self.proc.poll() not in (None, 0):
            return "the reader exited %d: %s" % (self.proc.returncode, self.lines[-3:])
        return None

    def done(self):
        return next((line for line in self.lines if line.startswith("done")), None)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def run(prefix, main, up_args=()):
    """Creates the lab (`prefix`: 2 letters; `up_args`: options of `topology up`, e.g.
    ["--origin"]), runs main(lab), deletes the lab; exits with the test's status."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("SKIP: needs root and iproute2")
        sys.exit(77)
    name = "%s%04d" % (prefix, os.getpid() % 10000)
    workdir = tempfile.mkdtemp(prefix="roam-%s-" % prefix)
    lab = Lab(name, workdir)
    code = 0
    try:
        up = subprocess.run([TOPOLOGY, "up", name] + list(up_args), capture_output=True, text=True)
        if up.returncode != 0:
            raise Failure("topology up: " + up.stderr)
        main(lab)
        log("# all checks passed")
    except Failure as e:
        code = 1
        log("FAIL - %s" % e)
        log("# logs kept in %s" % workdir)
    finally:
        lab.kill_all()
        subprocess.run([TOPOLOGY, "down", name], capture_output=True)
        if code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(code)
