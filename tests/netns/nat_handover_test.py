#!/usr/bin/env python3
"""The NAT handover through a real kernel NAT: after a server moves, the client sends one
authenticated synthetic SYN per moved connection toward the new server, so that a strict
stateful NAT in front of the client admits the redirected connection (the new server
answers with a SYN-ACK). nat_strict_test.py shows the problem; this test shows the fix.

  c   roam-client on rtun0 (198.18.11.2), forward 127.0.0.1:9000 -> 198.18.12.2:7000 (echo);
      the kernel client (a python script) runs here too
  r   tools/netns/nat on: masquerade toward s and s2, forward policy drop, new flows only
      from a client-side TCP SYN, conntrack with be_liberal=0 and loose=0; roamctl runs here
  s   roam-server echo on rtun0 (198.18.12.2), control 198.18.2.1:7100
  s2  roam-server echo on rtun0 (198.18.13.2), control 198.18.3.1:7100

Every variant gets a fresh lab (the namespaces are recreated, so conntrack starts empty)
and its own processes; all roam processes must exit 0 on SIGTERM.

  off     `--handover off` everywhere: the moved connection is blocked as in
          nat_strict_test (the NAT's invalid/blocked counters grow, no echo within 5 s), no
          handover line is logged, s2 accepted no SYN, the client sent none.
  always  default flags (no --handover): a kernel client streams 8 MiB of seeded
          pseudo-random bytes (paced at 1 MiB/s, at most 1 MiB ahead of the echo) through
          the forward while reading the echo back; the server moves s -> s2 at 2 MiB
          echoed and back s2 -> s at 5 MiB (the second SYN meets the NAT's conntrack
          entry of the old tuple), both while the writer is still writing. Each move: "ok
          moved 1 of 1", the client logs "handover to ...: 1 of 1" and "changeover to
          ...", the echo flows again, the NAT tracks the moved connection as ESTABLISHED
          (and admitted a new flow on the first move), the target's responder accepted
          >= 1 SYN and counted none forged, replayed or malformed. The echo must equal what
          was sent (length and SHA-256) with a clean EOF; the client's exit counters say
          syns sent >= 2 and failed 0.
  random  as always, NAT with `masquerade random` (the server sees another client port
          than the client uses: checked in the router's conntrack), explicit
          `--handover always`; one move s -> s2.
  twonat  NATs in c (tools/netns/nat on NAME --ns c: in front of rtun0) and in r; both
          must admit and track the moved connection; s -> s2 and back.
  loss    5 % random loss on the router in both directions (tools/netns/nat loss NAME 5)
          during a 4 MiB stream (0.25 MiB/s: slow enough that the writer is still busy at the
          second move even when a lost SYN delays the client's new channel by seconds under
          ASan) with moves s -> s2 at 1 MiB and back at 2.5 MiB,
          longer timeouts (TCP recovers); the roam processes use `tun:rtun0,no-offload`
          so the router loses single MTU-sized segments, not 64 KiB TSO bursts; the loss
          rule must have dropped packets.
  hole    like always with one move s -> s2, but just before it one segment from s and
          all its retransmissions are dropped on the router (tools/netns/nat hole NAME s):
          the client holds out-of-order data beyond the hole, and only s2 can fill it
          after the move (which follows at once); the client's cumulative ACK then jumps past
          everything the NAT saw in the new handshake (`,no-offload,no-uring` links: the
          TUN reader with one read() per packet, the other variants read with io_uring).
  many    1000 idle echo connections (kernel sockets in c through the forward) move at
          once: "ok moved 1000 of 1000", "handover to ...: 1000 of 1000", every connection
          echoes a fresh message afterwards, then "changeover to ...: 1000"; s2 accepted
          >= 1000 SYNs, the NAT admitted >= 1000 new flows and tracks >= 1000 ESTABLISHED.

Timings (handover, changeover) are printed as information only.
NAT_HANDOVER_VARIANTS=always,loss (comma list) runs some variants only. A failed variant
is reported with evidence (client and server log excerpts, NAT counters, the conntrack
tables of r and c, roamctl status of both servers; all of it in VARIANT-evidence.txt in
the kept work directory) and the remaining variants still run.
Exit 0 passed, 1 failed, 77 skipped (not root, or no `ip netns`).
"""
import hashlib
import json
import os
import random
import re
import resource
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import ECHO_CLIENT, NAT, ROAM_CLIENT, ROAM_SERVER, ROAMCTL, TOPOLOGY, Failure, log  # noqa: E402
import netns_lab  # noqa: E402
from netns_lab import run_tool, wait_until  # noqa: E402

MIB = 1 << 20
CONTROL = {"s": "198.18.2.1:7100", "s2": "198.18.3.1:7100"}
CARRIER = {"s": "198.18.12.2:7000", "s2": "198.18.13.2:7000"}
CLIENT_LWIP = "198.18.11.2"
CHUNK = 64 * 1024
LEAD = MIB  # the stream writer stays at most this far ahead of the echo
MANY = 1000

HANDOVER_RE = re.compile(r"handover to (\S+): (\d+) of (\d+) connection\(s\) answered in ([\d.]+) ms")
CHANGEOVER_RE = re.compile(r"changeover to (\S+): (\d+) connection\(s\) heard from on the new path in ([\d.]+) ms")
COUNTERS_RE = re.compile(r"handover:.*?syns sent (\d+).*?failed (\d+)")


# A kernel client inside namespace c that streams SIZE seeded pseudo-random bytes (chunks of
# CHUNK from random.Random(SEED), paced at RATE bytes/s and never more than LEAD bytes ahead
# of the echo, then a half-close) and reads the echo back concurrently until EOF. The lead
# keeps the writer busy until the echo is within LEAD of the end, however slow the path
# (loss): a move at an echo mark below SIZE - LEAD is always mid-stream. Prints "recv N"
# every 256 KiB, "sent N SHA" when the writer is done and "done N SHA" (or "error ...").
STREAM_CLIENT = """
import hashlib, random, socket, sys, threading, time
port, size, seed, rate, chunk, lead = map(int, sys.argv[1:7])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.settimeout(None)
lock = threading.Lock()

def say(*words):  # one write per line: the writer and the reader thread both report
    with lock:
        sys.stdout.write(" ".join(map(str, words)) + "\\n")
        sys.stdout.flush()

say("connected")

got = 0

def write():
    rng, h, sent, t0 = random.Random(seed), hashlib.sha256(), 0, time.monotonic()
    try:
        while sent < size:
            while sent - got > lead:
                time.sleep(0.005)
            data = rng.randbytes(min(chunk, size - sent))
            h.update(data)
            s.sendall(data)
            sent += len(data)
            ahead = sent / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
        say("sent", sent, h.hexdigest())  # before the FIN, so before the reader's "done"
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        say("error writing after %d bytes: %s" % (sent, e))

threading.Thread(target=write, daemon=True).start()
h, mark = hashlib.sha256(), 0
try:
    while True:
        data = s.recv(1 << 20)
        if not data:
            break
        h.update(data)
        got += len(data)
        if got - mark >= 256 * 1024:
            mark = got
            say("recv", got)
except OSError as e:
    say("error reading after %d bytes: %s" % (got, e))
    sys.exit(1)
say("done", got, h.hexdigest())
"""

# A kernel client inside namespace c holding N connections through the forward. Each round
# ("ROUND TAG SECONDS" on stdin) sends every connection its own fresh message and waits for
# each to come back exactly; prints "round TAG ok K fail F [first failures]".
MANY_CLIENT = """
import os, resource, selectors, socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = n + 256
if soft != resource.RLIM_INFINITY and soft < want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
socks = []
for i in range(n):
    socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
for s in socks:
    s.setblocking(False)
print("connected", len(socks), flush=True)

def round_trip(tag, seconds):
    want, got = {}, {}
    for i, s in enumerate(socks):
        want[s] = ("%s %d %s\\n" % (tag, i, os.urandom(12).hex())).encode()
        got[s] = b""
        if s.send(want[s]) != len(want[s]):
            print("round", tag, "short send on", i, flush=True)
            return
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    pending, deadline = len(socks), time.monotonic() + seconds
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                pending -= 1
                continue
            got[s] += data
            if len(got[s]) >= len(want[s]):
                sel.unregister(s)
                pending -= 1
    sel.close()
    bad = [i for i, s in enumerate(socks) if got[s] != want[s]]
    print("round", tag, "ok", len(socks) - len(bad), "fail", len(bad),
          " ".join("%d:%d/%d" % (i, len(got[socks[i]]), len(want[socks[i]])) for i in bad[:10]), flush=True)

for line in sys.stdin:
    _, tag, seconds = line.split()
    round_trip(tag, float(seconds))
"""


def expected_digest(size, seed):
    rng, h, left = random.Random(seed), hashlib.sha256(), size
    while left:
        data = rng.randbytes(min(CHUNK, left))
        h.update(data)
        left -= len(data)
    return h.hexdigest()


def parse_conntrack(text):
    """Entries of /proc/net/nf_conntrack as (state, original tuple, reply tuple)."""
    entries = []
    for line in text.splitlines():
        pairs = re.findall(r"src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)", line)
        if " tcp " in line and len(pairs) == 2:
            entries.append((line.split()[5], pairs[0], pairs[1]))
    return entries


def responder_summary(status):
    keys = ("handover_syns_accepted", "handover_syns_repeated", "handover_syns_unknown", "handover_synacks_sent")
    return "accepted %s, repeated %s, unknown %s, SYN-ACKs sent %s" % tuple(status.get(k, "?") for k in keys)


class Variant:
    """One variant's processes and NAT rules in a freshly recreated lab; labels are TAG-NAME."""

    def __init__(self, lab, tag, handover):
        self.lab = lab
        self.tag = tag
        self.flags = [] if handover is None else ["--handover", handover]
        self.link = "tun:rtun0"
        self.labels = []
        self.readers = []

    def label(self, name):
        return "%s-%s" % (self.tag, name)

    def nat(self, *args):
        return run_tool([NAT, args[0], self.lab.name] + list(args[1:]), "nat " + " ".join(args))

    def counters(self, where="r"):
        words = self.nat("counters", "--ns", where).split()
        return dict(zip(words[0::2], map(int, words[1::2])))

    def start(self):
        for role in ("s", "s2"):
            self.lab.start(self.label("server_" + role), role, [
                ROAM_SERVER, "--link", self.link, "--addr", CARRIER[role].split(":")[0], "--control",
                CONTROL[role]] + self.lab.pool().server_args(role) + self.flags + ["echo"])
            self.labels.append(self.label("server_" + role))
        for role in ("s", "s2"):
            self.lab.wait_log(self.label("server_" + role), "interface up")
        self.lab.start(self.label("client"), "c", [ROAM_CLIENT, "--link", self.link, "--addr", CLIENT_LWIP,
                                                   "-L", "127.0.0.1:9000:" + CARRIER["s"]] + self.flags)
        self.labels.insert(0, self.label("client"))
        self.lab.wait_log(self.label("client"), "interface up")

    def client_log(self):
        return self.lab.log_text(self.label("client"))

    def gave_up(self):
        """fail_fast for waits: the client logged that a handover got no SYN-ACK, or that a
        moved connection never heard from its new server."""
        for line in self.client_log().splitlines():
            if "no SYN-ACK after" in line or "the new server never answered" in line:
                return "the client gave up: " + line.strip()
        return None

    def status(self, role):
        out = self.lab.run_in("r", [ROAMCTL, "status", "--server", CONTROL[role]], timeout=30)
        if out.returncode != 0:
            raise Failure("roamctl status %s: %s %s" % (role, out.stdout.strip(), out.stderr.strip()))
        return json.loads(out.stdout)

    def check_responder(self, role, accepted_at_least):
        """The role's handover responder accepted enough SYNs and saw none forged, replayed
        (another client address, port or sequence number for an answered connection) or
        malformed; returns its status."""
        status = self.status(role)
        accepted = status.get("handover_syns_accepted", 0)
        if accepted < accepted_at_least:
            raise Failure("%s says handover_syns_accepted %d, want >= %d (%s)" % (
                role, accepted, accepted_at_least, responder_summary(status)))
        bad = {k: status.get(k) for k in ("handover_syns_forged", "handover_syns_replayed", "handover_syns_malformed")
               if status.get(k) != 0}
        if bad:
            raise Failure("%s's handover responder counted %s" % (role, bad))
        return status

    def tracked(self, where, target):
        """Conntrack states in namespace `where` of connections toward target's carrier port."""
        table = self.lab.run_in(where, ["cat", "/proc/net/nf_conntrack"]).stdout
        return [state for state, original, _ in parse_conntrack(table)
                if "%s:%s" % (original[1], original[3]) == CARRIER[target]]

    def wait_sessions(self, role, sessions, seconds=30):
        """The server holds `sessions` sessions and the client's registration (its control channel)."""
        wait_until(lambda: (lambda st: st.get("sessions") == sessions and st.get("registrations", 0) >= 1)(
            self.status(role)), seconds, "%s holding %d session(s) and the client's registration" % (role, sessions))

    def migrate(self, source, target, moved):
        out = self.lab.run_in("r", [ROAMCTL, "migrate", "--from", CONTROL[source], "--to", CONTROL[target]],
                              timeout=90)
        want = "ok moved %d of %d" % (moved, moved)
        if out.returncode != 0 or not out.stdout.startswith(want):
            raise Failure("move %s -> %s: want %r, got %s %s" % (source, target, want, out.stdout.strip(),
                                                                   out.stderr.strip()))
        return out.stdout.strip()

    def wait_handover(self, target, moved, count, seconds):
        """Waits for the count-th handover and changeover lines toward target; returns their ms."""
        def nth(regex):
            found = [m for m in regex.finditer(self.client_log()) if m.group(1) == CARRIER[target]]
            return found[count - 1] if len(found) >= count else None

        h = wait_until(lambda: nth(HANDOVER_RE), seconds, "client logging 'handover to %s'" % CARRIER[target],
                       self.gave_up)
        if int(h.group(2)) != moved or int(h.group(3)) != moved:
            raise Failure("handover answered %s of %s connection(s), want %d of %d" % (h.group(2), h.group(3),
                                                                                     moved, moved))
        c = wait_until(lambda: nth(CHANGEOVER_RE), seconds, "client logging 'changeover to %s'" % CARRIER[target],
                       self.gave_up)
        if int(c.group(2)) != moved:
            raise Failure("changeover heard from %s connection(s), want %d" % (c.group(2), moved))
        return float(h.group(4)), float(c.group(3))

    def spawn(self, script, args):
        p = subprocess.Popen([TOPOLOGY, "exec", self.lab.name, "c", sys.executable, "-c", script] + args,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.readers.append(p)
        return p

    def stop(self):
        """Ends the kernel clients, then SIGTERMs the roam processes (each must exit 0); returns
        the client's handover exit counters (syns sent, failed)."""
        for p in self.readers:
            if p.poll() is None:
                p.kill()
            p.wait()
        self.lab.stop_cleanly(self.labels)
        m = COUNTERS_RE.search(self.client_log())
        if not m:
            raise Failure("the client's exit counters have no 'handover: ... syns sent N ... failed N' line")
        return int(m.group(1)), int(m.group(2))

    def evidence(self):
        """Everything that helps to see why a variant failed; never raises."""
        parts = []

        def add(title, produce):
            try:
                parts.append("== %s\n%s" % (title, produce()))
            except Exception as e:  # evidence is best effort
                parts.append("== %s\n(unavailable: %s)" % (title, e))

        def excerpt(label, pattern=None, tail=40):
            lines = self.lab.log_text(self.label(label)).splitlines()
            if pattern:
                lines = [line for line in lines if re.search(pattern, line)]
            return "\n".join(lines[-tail:])

        add("client log (migrate/handover/channel lines)",
            lambda: excerpt("client", r"migrate|handover|changeover|SYN|channel|error|warn|handover:"))
        for role in ("s", "s2"):
            add("server %s log (tail)" % role, lambda role=role: excerpt("server_" + role))
            add("roamctl status %s" % role, lambda role=role: json.dumps(self.status(role)))
        for where in ("r", "c"):
            add("nat counters --ns %s" % where, lambda where=where: " ".join(
                "%s %d" % kv for kv in self.counters(where).items()))
            add("conntrack in %s (tcp entries)" % where,
                lambda where=where: "\n".join(
                    line for line in self.lab.run_in(where, ["cat", "/proc/net/nf_conntrack"]).stdout.splitlines()
                    if " tcp " in line))
        text = "\n".join(parts)
        path = os.path.join(self.lab.workdir, self.tag + "-evidence.txt")
        with open(path, "w") as f:
            f.write(text + "\n")
        lines = text.splitlines()
        if len(lines) > 150:
            lines = lines[:150] + ["... (%d more lines in %s)" % (len(lines) - 150, path)]
        return "\n".join("#   " + line for line in lines)


# ------------------------------------------------------------------------------ variants

def variant_off(v):
    v.nat("on")
    v.start()
    echo = v.spawn(ECHO_CLIENT, ["9000"])

    def round_trip():
        echo.stdin.write("ROUND 4096\n")
        echo.stdin.flush()
        return echo.stdout.readline().strip()

    if round_trip() != "echo ok":
        raise Failure("no echo through the NAT before the move")
    v.wait_sessions("s", 1)
    # The carrier's SYN proved its owner through the NAT (the proof covers neither the
    # client's address nor its port, which the NAT rewrites).
    proven = v.status("s").get("owner_syns_proven", 0)
    if proven < 1:
        raise Failure("the carrier's owner proof did not verify through the NAT (owner_syns_proven %d)" % proven)
    before = v.counters()
    out = v.migrate("s", "s2", 1)
    v.lab.wait_log(v.label("client"), "connection(s) follow (ACM")
    result = round_trip()
    after = v.counters()
    invalid, blocked = after["invalid"] - before["invalid"], after["blocked"] - before["blocked"]
    if result == "echo ok":
        raise Failure("with --handover off the redirected connection got through the strict NAT")
    if invalid + blocked == 0:
        raise Failure("the NAT counted no drop: %s -> %s" % (before, after))
    log("ok   - off: %s; the client followed, but no echo (%s): NAT dropped invalid %d, blocked %d packets" % (
        out, result, invalid, blocked))
    if "handover to" in v.client_log():
        raise Failure("with --handover off the client logged a handover")
    accepted = v.status("s2").get("handover_syns_accepted")
    if accepted != 0:
        raise Failure("with --handover off s2 says handover_syns_accepted %r, want 0" % accepted)
    sent, failed = v.stop()
    if sent != 0:
        raise Failure("with --handover off the client's counters say syns sent %d" % sent)
    log("ok   - off: no handover logged, s2 accepted 0 SYNs, the client sent 0; all exited 0 on SIGTERM")


def stream_with_moves(v, size, rate, moves, seconds, seed, prepare=None):
    """Streams `size` bytes through the forward, moving at the given echoed-byte marks;
    moves: [(source, target, at_bytes)]; prepare(i, echoed), if given, runs just before
    move i. Returns per-move (handover ms, changeover ms)."""
    want = expected_digest(size, seed)
    child = v.spawn(STREAM_CLIENT, ["9000", str(size), str(seed), str(rate), str(CHUNK), str(LEAD)])
    state = {"recv": 0, "lines": []}

    def pump():
        for line in child.stdout:
            line = line.strip()
            state["lines"].append(line)
            if line.startswith(("recv ", "done ")):
                state["recv"] = int(line.split()[1])

    threading.Thread(target=pump, daemon=True).start()

    def child_failed():
        bad = [line for line in state["lines"] if line.startswith(("error", "done"))]
        if bad:
            return "the stream ended early: " + bad[-1]
        if child.poll() is not None:
            return "the stream client exited %s: %s" % (child.returncode, state["lines"][-3:])
        return v.gave_up()

    wait_until(lambda: "connected" in state["lines"], 15, "stream connected", child_failed)
    v.wait_sessions("s", 1)
    timings = []
    for i, (source, target, at) in enumerate(moves):
        wait_until(lambda: state["recv"] >= at, seconds, "echo reaching %d KiB before move %d" % (at >> 10, i + 1),
                   child_failed)
        if any(line.startswith("sent") for line in state["lines"]):
            raise Failure("the writer finished before move %d: not mid-stream (lower the rate)" % (i + 1))
        v.wait_sessions(source, 1)
        nat_before = {where: v.counters(where) for where in v.nat_namespaces}
        if prepare:
            prepare(i, lambda: state["recv"])
        at_move = state["recv"]
        out = v.migrate(source, target, 1)
        handover_ms, changeover_ms = v.wait_handover(target, 1, sum(1 for m in moves[:i + 1] if m[1] == target),
                                                     seconds)
        # Right away, while the stream is still flowing (at its end conntrack sees the FINs).
        states = {where: v.tracked(where, target) for where in v.nat_namespaces}
        writer_done = any(line.startswith("sent") for line in state["lines"])
        wait_until(lambda: state["recv"] >= min(at_move + 256 * 1024, size), seconds,
                   "echo flowing again after move %d" % (i + 1), child_failed)
        status = v.check_responder(target, 1)
        admitted = []
        for where in v.nat_namespaces:
            after = v.counters(where)
            grew = after["admitted"] - nat_before[where]["admitted"]
            if i == 0 and grew < 1:
                raise Failure("the NAT in %s admitted no new flow for the synthetic SYN" % where)
            ok_states = {"ESTABLISHED"}
            if writer_done:  # the stream may have ended (FINs) before the table was read
                ok_states |= {"FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT"}
            if not ok_states & set(states[where]):
                raise Failure("the NAT in %s does not track the moved connection to %s as ESTABLISHED: %s" % (
                    where, CARRIER[target], states[where]))
            admitted.append("%s +%d (invalid +%d)" % (where, grew, after["invalid"] - nat_before[where]["invalid"]))
        # The NAT admits the first move's SYN as a new flow (with the control channel to the
        # new server); the move back meets the old tuple's entry, which conntrack re-syncs.
        log("ok   - %s: move %d %s -> %s at %.1f MiB echoed: %s; handover %.3f ms, changeover %.3f ms; "
            "NAT admitted %s and tracks it ESTABLISHED; %s handover SYNs: %s" % (
                v.tag, i + 1, source, target, at_move / MIB, out, handover_ms, changeover_ms, ", ".join(admitted),
                target, responder_summary(status)))
        timings.append((handover_ms, changeover_ms))
    wait_until(lambda: any(line.startswith("done") for line in state["lines"]) or child.poll() is not None,
               seconds + size / rate, "the stream's end (EOF)", v.gave_up)
    child.wait(10)
    done = [line for line in state["lines"] if line.startswith("done")]
    sent = [line for line in state["lines"] if line.startswith("sent")]
    if not done or not sent or child.returncode != 0:
        raise Failure("stream client (exit %s): %s" % (child.returncode, state["lines"][-5:]))
    _, count, digest = done[0].split()
    if sent[0].split()[2] != want:
        raise Failure("the writer's sha256 %s differs from the expected %s (generator mismatch)" % (
            sent[0].split()[2], want))
    if int(count) != size or digest != want:
        raise Failure("echo came back %s bytes, sha256 %s; sent %d bytes, sha256 %s" % (count, digest, size, want))
    log("ok   - %s: %.0f MiB echoed back byte-exact (sha256 %s...) across %d move(s), clean EOF" % (
        v.tag, size / MIB, want[:16], len(moves)))
    return timings


def variant_stream(v, size, rate, moves, seconds=20, random_ports=False, nat_in_c=False, loss=0, no_offload=False,
                   prepare=None, uring=True):
    v.nat_namespaces = ["r"]
    v.nat("on", *(["--random"] if random_ports else []))
    if nat_in_c:
        v.nat("on", "--ns", "c")
        v.nat_namespaces.append("c")
    if loss:
        # From just before the first move on: the connection and the control channel are
        # set up without loss (lwIP's first SYN retransmission waits 3 s), the moves and
        # the rest of the stream run with it.
        def lossy(i, echoed, then=prepare):
            if i == 0:
                v.nat("loss", str(loss))
            if then:
                then(i, echoed)
        prepare = lossy
    if loss or no_offload:
        # MTU-sized packets on the path, so that the router loses single segments rather
        # than whole 64 KiB TSO bursts.
        v.link = "tun:rtun0,no-offload"
    if not uring:
        # The other TUN reader: one read() per packet instead of io_uring batches.
        v.link = (v.link or "tun:rtun0") + ",no-uring"
    v.start()
    stream_with_moves(v, size, rate, moves, seconds, seed=sum(map(ord, v.tag)), prepare=prepare)
    if random_ports:
        table = v.lab.run_in("r", ["cat", "/proc/net/nf_conntrack"]).stdout
        moved = [(o, r) for _, o, r in parse_conntrack(table)
                 if o[0] == CLIENT_LWIP and "%s:%s" % (o[1], o[3]) == CARRIER["s2"]]
        if not moved:
            raise Failure("no conntrack entry in r for the moved connection to %s" % CARRIER["s2"])
        changed = [(o, r) for o, r in moved if o[2] != r[3]]
        if not changed:
            raise Failure("masquerade random kept the client's port: %s" % moved)
        o, r = changed[0]
        log("ok   - %s: the NAT changed the client's port (%s:%s is %s:%s to s2)" % (v.tag, o[0], o[2], r[1], r[3]))
    if loss:
        lost = v.counters()["lost"]
        if lost == 0:
            raise Failure("the loss rule dropped no packet")
        log("ok   - %s: the router dropped %d packets at random (%d %%)" % (v.tag, lost, loss))
    sent, failed = v.stop()
    if sent < len(moves) or failed != 0:
        raise Failure("the client's exit counters say syns sent %d, failed %d (want >= %d, 0)" % (
            sent, failed, len(moves)))
    log("ok   - %s: client counters syns sent %d, failed 0; all exited 0 on SIGTERM" % (v.tag, sent))


def variant_hole(v):
    """Just before the move, one segment from s is lost for good (tools/netns/nat hole): the
    client holds out-of-order data beyond the hole, which only s2 can fill after the move."""
    def make_hole(i, echoed):
        v.nat("hole", "s")
        # A retransmission dropped too: the hole stays. Move at once: lwIP frees out-of-order
        # data after a few idle RTOs (TCP_OOSEQ_TIMEOUT), and then there is no hole left.
        wait_until(lambda: v.counters().get("holed", 0) >= 2, 10,
                   "the hole rule dropping a segment from s and a retransmission of it")
        log("ok   - hole: a segment from s and its retransmission dropped at %.1f MiB echoed" % (echoed() / MIB))

    variant_stream(v, 8 * MIB, MIB, [("s", "s2", 2 * MIB)], no_offload=True, prepare=make_hole, uring=False)


def variant_many(v):
    v.nat("on")
    v.start()
    child = v.spawn(MANY_CLIENT, ["9000", str(MANY)])

    def read_line(what, seconds):
        line = []
        t = threading.Thread(target=lambda: line.append(child.stdout.readline().strip()), daemon=True)
        t.start()
        t.join(seconds)
        if not line:
            raise Failure("%s: no answer from the kernel client within %g s" % (what, seconds))
        return line[0]

    def round_trip(tag, seconds):
        child.stdin.write("ROUND %s %g\n" % (tag, seconds))
        child.stdin.flush()
        line = read_line("round " + tag, seconds + 30)
        if line != "round %s ok %d fail 0" % (tag, MANY):
            raise Failure("echo round %s: %s" % (tag, line))

    started = time.monotonic()
    line = read_line("opening %d connections" % MANY, 120)
    if line != "connected %d" % MANY:
        raise Failure("opening %d connections: %s" % (MANY, line))
    round_trip("before", 30)
    v.wait_sessions("s", MANY, 60)
    # Carriers behind one NAT address share a /24: their SYNs prove their owner (the
    # client's control channel) and so skip the per-prefix SYN limits (PROTOCOL 10.5).
    # Without that, a slow server cookied them, budgeted and first-dropped them, and a
    # few connects gave up after three unanswered SYNs.
    exempt = v.status("s").get("syn_proven_exempt", 0)
    if exempt < MANY // 2:
        raise Failure("s let only %d owner-proven SYNs past its per-prefix limits, want >= %d" % (exempt, MANY // 2))
    log("ok   - many: %d connections through the NAT echo (%.1f s to open); %d owner-proven SYNs outside the "
        "per-prefix limits" % (MANY, time.monotonic() - started, exempt))
    before = v.counters()
    out = v.migrate("s", "s2", MANY)
    h = wait_until(lambda: HANDOVER_RE.search(v.client_log()), 60, "client logging 'handover to'", v.gave_up)
    if (h.group(1), h.group(2), h.group(3)) != (CARRIER["s2"], str(MANY), str(MANY)):
        raise Failure("client logged %r, want handover to %s: %d of %d" % (h.group(0), CARRIER["s2"], MANY, MANY))
    round_trip("after", 30)
    c = wait_until(lambda: CHANGEOVER_RE.search(v.client_log()), 30, "client logging 'changeover to'", v.gave_up)
    if int(c.group(2)) != MANY:
        raise Failure("changeover heard from %s connection(s), want %d" % (c.group(2), MANY))
    status = v.check_responder("s2", MANY)
    admitted = v.counters()["admitted"] - before["admitted"]
    if admitted < MANY:
        raise Failure("the NAT admitted %d new flows during the move, want >= %d" % (admitted, MANY))
    established = v.tracked("r", "s2").count("ESTABLISHED")
    if established < MANY:
        raise Failure("the NAT tracks %d connections to s2 as ESTABLISHED, want >= %d" % (established, MANY))
    log("ok   - many: %s; handover %s ms, changeover %s ms; NAT admitted %d, tracks %d ESTABLISHED; every "
        "connection echoed a fresh message; s2 handover SYNs: %s" % (
            out, h.group(4), c.group(3), admitted, established, responder_summary(status)))
    child.stdin.close()
    child.wait(30)
    sent, failed = v.stop()
    if sent < MANY or failed != 0:
        raise Failure("the client's exit counters say syns sent %d, failed %d (want >= %d, 0)" % (sent, failed, MANY))
    log("ok   - many: client counters syns sent %d, failed 0; all exited 0 on SIGTERM" % sent)


MOVES_THERE_AND_BACK = [("s", "s2", 2 * MIB), ("s2", "s", 5 * MIB)]
VARIANTS = [
    ("off", "off", variant_off),
    ("always", None, lambda v: variant_stream(v, 8 * MIB, MIB, MOVES_THERE_AND_BACK)),
    ("random", "always", lambda v: variant_stream(v, 8 * MIB, MIB, [("s", "s2", 2 * MIB)], random_ports=True)),
    ("twonat", None, lambda v: variant_stream(v, 8 * MIB, MIB, MOVES_THERE_AND_BACK, nat_in_c=True)),
    ("loss", None, lambda v: variant_stream(v, 4 * MIB, MIB // 4, [("s", "s2", MIB), ("s2", "s", 5 * MIB // 2)],
                                            seconds=60, loss=5)),
    ("hole", None, variant_hole),
    ("many", "always", variant_many),
]


def main(lab):
    # roam-client inherits this: two sockets per forwarded connection in the many variant.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4 * MANY + 256
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    chosen = os.environ.get("NAT_HANDOVER_VARIANTS", "")
    names = [n for n in chosen.split(",") if n] or [name for name, _, _ in VARIANTS]
    unknown = set(names) - {name for name, _, _ in VARIANTS}
    if unknown:
        raise Failure("unknown NAT_HANDOVER_VARIANTS %s" % ", ".join(sorted(unknown)))
    failed = []
    fresh = False
    for name, handover, run in VARIANTS:
        if name not in names:
            continue
        if fresh:  # recreate the namespaces: empty conntrack, no rules, no processes
            lab.kill_all()
            lab.procs = {}
            run_tool([TOPOLOGY, "up", lab.name], "topology up")
        fresh = True
        v = Variant(lab, name, handover)
        started = time.monotonic()
        try:
            run(v)
            log("# %s passed in %.1f s" % (name, time.monotonic() - started))
        except Failure as e:
            log("not ok - %s (after %.1f s): %s" % (name, time.monotonic() - started, e))
            log(v.evidence())
            failed.append(name)
        finally:
            for p in v.readers:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    if failed:
        raise Failure("variants failed: %s" % ", ".join(failed))


if __name__ == "__main__":
    netns_lab.run("nh", main)
