#!/usr/bin/env python3
"""Proactive roaming (seed 002, PROTOCOL.md 13): sessions follow every roam of a pool of
three roam-servers, through a strict NAT before the client.

  c   roam-client on rtun0 (198.18.11.2): -L 9000 -> 198.18.12.2:7000 (files) and
      -L 9001 -> 198.18.12.2:7007 (echo); pool members are redirected to the active one
  r   tools/netns/nat on: masquerade, forward policy drop, new flows only from a client
      TCP SYN, strict conntrack (a moved connection gets through only by the handover)
  s, s2, o  roam-server files --echo-port 7007 on 198.18.12.2, .13.2, .14.2, members
      0..2 of one pool (epochs of 2 s, m = 0), each with its control port in the file and
      a certificate of the lab's pool

The schedule is computed here from PROTOCOL.md 13.1-13.3 alone (hashlib): the test picks
a run length that holds at least 3 roams (active member changes) and
ROAMSTACK_TEST_SCALE x 30 s (at least 12 s).

Checks:
1. the client learns the schedule from a member and names the active server Python names;
2. two paced file downloads and an echo stream (a chunk every 100 ms, each checked) run
   through every roam: both SHA-256 exact, every echo byte-exact;
3. while they run, each member's status (roam_epoch, roam_active) agrees with Python's
   schedule, and the members hand the sessions on: roam_sessions_moved > 0 on at least two
   members (the sessions were on more than one), roam_moves_failed 0;
4. a standby member drops a client SYN (a kernel connect from c to it through the NAT):
   its roam_dropped_standby rises and the connect gets nothing.
Exit 0 passed, 1 failed, 77 skipped (not root). About 40 s plain.
"""
import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import NAT, ROAM_CLIENT, ROAM_SERVER, ROAMCTL, TOPOLOGY, Failure, PacedReader, log  # noqa: E402
import netns_lab  # noqa: E402

ROLES = ["s", "s2", "o"]
LWIP = {"s": "198.18.12.2", "s2": "198.18.13.2", "o": "198.18.14.2"}
CONTROL = {"s": "198.18.2.1:7100", "s2": "198.18.3.1:7100", "o": "198.18.4.1:7100"}
EPOCH_S = 2
LENGTH = 4096
ECHO_PORT = 7007
MIN_ROAMS = 3

# A kernel client in c: one echo connection, a random chunk every 100 ms for SECONDS,
# each checked byte for byte; "echo ok CHUNKS BYTES" or "echo failed ...".
ECHO_STREAM = """
import os, socket, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.settimeout(30)
end, chunks, total, worst = time.monotonic() + seconds, 0, 0, 0.0
try:
    while time.monotonic() < end:
        data = os.urandom(512 + chunks % 1500)
        t0 = time.monotonic()
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            part = s.recv(len(data) - len(got))
            if not part:
                raise OSError("closed after %d of %d bytes" % (len(got), len(data)))
            got += part
        if got != data:
            print("echo failed: chunk %d differs" % chunks, flush=True)
            sys.exit(1)
        worst = max(worst, time.monotonic() - t0)
        chunks += 1
        total += len(data)
        time.sleep(0.1)
except OSError as e:
    print("echo failed after %d chunks: %s" % (chunks, e), flush=True)
    sys.exit(1)
print("echo ok %d %d worst_ms %.0f" % (chunks, total, worst * 1000), flush=True)
"""


def blake(label, key):
    return hashlib.blake2b(label + key, digest_size=32).digest()


def schedule(seed, start, count):
    """[(epoch, start_s, S_epoch)] for epochs 1..count (PROTOCOL.md 13.1-13.3, m = 0)."""
    keys = [seed]
    for _ in range(LENGTH):
        keys.append(blake(b"roamstack chain v1", keys[-1]))
    keys.reverse()  # keys[i] = K_i
    out = []
    for i in range(1, count + 1):
        v = int.from_bytes(blake(b"roamstack roam server v1", keys[i])[:8], "big")
        out.append((i, start + (i - 1) * EPOCH_S, (v * len(ROLES)) >> 64))
    return out


def epoch_at(start, t):
    return int((t - start) // EPOCH_S) + 1


def scale():
    try:
        return max(0.05, float(os.environ.get("ROAMSTACK_TEST_SCALE", "1")))
    except ValueError:
        return 1.0


def status(lab, role):
    out = lab.run_in("r", [ROAMCTL, "status", "--server", CONTROL[role]], timeout=30)
    if out.returncode != 0:
        raise Failure("roamctl status %s: %s %s" % (role, out.stdout.strip(), out.stderr.strip()))
    return json.loads(out.stdout)


def write_pool(workdir, seed, start):
    seed_path = os.path.join(workdir, "pool.chain")
    fd = os.open(seed_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (base64.b64encode(seed).decode() + "\n").encode())
    os.close(fd)
    path = os.path.join(workdir, "pool.conf")
    with open(path, "w") as f:
        f.write("# written by roaming_test\nseed pool.chain\nlength %d\nstart %d\nepoch %d\nm 0\n"
                "delta-ms 100\ngamma-ms 200\nupdate-seconds 1\n" % (LENGTH, start, EPOCH_S))
        for role in ROLES:
            f.write("member %s:7000 control %s\n" % (LWIP[role], CONTROL[role]))
    return path


def write_file(path, size):
    digest = hashlib.sha256()
    block = hashlib.sha256(path.encode()).digest() * 2048  # 64 KiB, not all zeros
    with open(path, "wb") as f:
        left = size
        while left > 0:
            part = block[:min(left, len(block))]
            f.write(part)
            digest.update(part)
            left -= len(part)
    return digest.hexdigest()


def check_members(lab, plan, start):
    """Every member's (epoch, active) agrees with the schedule computed here."""
    active_of = {e: s for e, _, s in plan}
    for index, role in enumerate(ROLES):
        for attempt in range(2):  # a boundary may fall between two gauges of one status
            st = status(lab, role)
            epoch, active = st["roam_epoch"], st["roam_active"]
            want = 1 if active_of.get(epoch) == index else 0
            if active == want and abs(epoch - epoch_at(start, time.time())) <= 1:
                break
            if attempt == 1:
                raise Failure("%s (member %d) says epoch %d active %d; the schedule says member %s is active" % (
                    role, index, epoch, active, active_of.get(epoch)))
    return True


def main(lab):
    seed = os.urandom(32)
    start = int(time.time()) - 1
    plan = schedule(seed, start, 200)
    # Long enough for ROAMSTACK_TEST_SCALE x 30 s and at least MIN_ROAMS changes of member,
    # counted from when the streams start (about 8 s from now).
    streams_from = time.time() + 8
    seconds = max(12.0, 30.0 * scale())
    first = epoch_at(start, streams_from)
    roams, e = 0, first
    while roams < MIN_ROAMS or plan[e - 1][1] < streams_from + seconds:
        if plan[e][2] != plan[e - 1][2]:
            roams += 1
        e += 1
        if e >= len(plan):
            raise Failure("the schedule has too few roams")
    seconds = max(seconds, plan[e - 1][1] - streams_from + 0.5)
    log("# pool: %d members, %d s epochs; streams run %.1f s (epochs %d-%d: %d roams): %s" % (
        len(ROLES), EPOCH_S, seconds, first, e - 1, roams, " ".join(ROLES[p[2]] for p in plan[first - 1:e])))

    pool_file = write_pool(lab.workdir, seed, start)
    root = os.path.join(lab.workdir, "files")
    os.makedirs(root)
    # Fast enough that the kernel's and the splice's buffers (several MiB) hold only the
    # last seconds of a file: the server's session lives, and moves, until then.
    rate = 1024 * 1024
    size = int(rate * seconds)
    digests = {name: write_file(os.path.join(root, name), size) for name in ("one", "two")}

    nat = subprocess.run([NAT, "on", lab.name], capture_output=True, text=True)
    if nat.returncode != 0:
        raise Failure("nat on: " + nat.stderr)
    for role in ROLES:
        lab.start("server_" + role, role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", LWIP[role], "--control",
                                           CONTROL[role], "--roam-pool", pool_file, "--echo-port", str(ECHO_PORT)]
                  + lab.pool().server_args(role) + ["files", "--root", root])
    for role in ROLES:
        lab.wait_log("server_" + role, "interface up")
    lab.start("client", "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", "198.18.11.2",
                              "-L", "127.0.0.1:9000:%s:7000" % LWIP["s"],
                              "-L", "127.0.0.1:9001:%s:%d" % (LWIP["s"], ECHO_PORT)])
    lab.wait_log("client", "interface up")

    # 1. A first connection opens the channel to s; its ROAM_UPDATE brings the schedule.
    warm = subprocess.run([TOPOLOGY, "exec", lab.name, "c", sys.executable, "-c",
                           "import socket; socket.create_connection(('127.0.0.1', 9001), timeout=5).close()"],
                          capture_output=True, text=True)
    if warm.returncode != 0:
        raise Failure("no connection to the forward: " + warm.stderr[-500:])
    lab.wait_log("client", "roam schedule from %s" % LWIP["s"], seconds=20)
    line = [x for x in lab.log_text("client").splitlines() if "roam schedule from" in x][0]
    words = line.split("epoch ", 1)[1].split()
    epoch = int(words[0])
    want = "active server %s:7000" % LWIP[ROLES[plan[epoch - 1][2]]]
    if want not in line:
        raise Failure("the client's schedule %r; Python's for epoch %d: %s" % (line, epoch, want))
    log("ok   - the client learned the schedule: %s" % line.split("roam schedule", 1)[1].strip())

    # 2. The streams, through every roam.
    readers = [PacedReader(lab, name, rate) for name in ("one", "two")]
    echo = subprocess.Popen([TOPOLOGY, "exec", lab.name, "c", sys.executable, "-c", ECHO_STREAM, "9001",
                             str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    echo_out = []
    threading.Thread(target=lambda: echo_out.append(echo.communicate()[0]), daemon=True).start()
    try:
        deadline = time.monotonic() + seconds + 60
        checks = 0
        while True:
            for r in readers:
                if r.failed():
                    raise Failure(r.failed())
            if all(r.done() for r in readers) and echo.poll() is not None:
                break
            if time.monotonic() > deadline:
                raise Failure("the streams did not end: %s" % [r.received() for r in readers])
            if echo.poll() is None:
                checks += check_members(lab, plan, start)
            time.sleep(1)
        for name, r in zip(("one", "two"), readers):
            words = r.done().split()
            if int(words[1]) != size or words[2] != digests[name]:
                raise Failure("file %s: got %s, want %d bytes %s" % (name, r.done(), size, digests[name]))
        deadline = time.monotonic() + 10
        while not echo_out and time.monotonic() < deadline:
            time.sleep(0.05)
        text = echo_out[0].strip() if echo_out else ""
        if echo.returncode != 0 or not text.startswith("echo ok"):
            raise Failure("echo stream: %s" % text)
    finally:
        for r in readers:
            r.kill()
        if echo.poll() is None:
            echo.kill()
    log("ok   - 2 files of %d bytes SHA-256 exact and an echo stream byte-exact (%s) through %d roams" % (
        size, text, roams))
    log("ok   - every member agreed with the Python schedule in %d status rounds" % checks)

    # 3. Sessions were on more than one member; no move failed.
    stats = {role: status(lab, role) for role in ROLES}
    moved = {role: stats[role]["roam_sessions_moved"] for role in ROLES}
    failed = sum(stats[role]["roam_moves_failed"] for role in ROLES)
    holders = [role for role in ROLES if moved[role] > 0]
    if len(holders) < 2:
        raise Failure("sessions moved away from %s only: %s" % (holders, moved))
    if failed != 0:
        raise Failure("%d roam moves failed: %s" % (failed, {r: stats[r]["roam_moves_failed"] for r in ROLES}))
    for role in ROLES:
        gap = [x for x in lab.log_text("server_" + role).splitlines() if "roam epoch" in x and "moved" in x]
        log("# %s: roam_moves_started %d, roam_sessions_moved %d" % (role, stats[role]["roam_moves_started"],
                                                                     moved[role]))
        for line in gap:
            log("#   " + line.split("] ")[-1])
    log("ok   - sessions were on %d members (roam_sessions_moved %s), no move failed" % (len(holders), moved))

    # 4. A standby member drops a client SYN: one that is neither this epoch's member nor
    # the last one's (past the transitional interval, 300 ms) nor the next one's, for the
    # connect's 1 s.
    while True:
        now = time.time()
        e = epoch_at(start, now)
        _, begins, active = plan[e - 1]
        others = {active, plan[e - 2][2], plan[e][2]}
        standby = [i for i in range(len(ROLES)) if i not in others]
        if standby and 0.35 < now - begins < 0.6:
            break
        time.sleep(0.05)
    role = ROLES[standby[0]]
    before = status(lab, role)["roam_dropped_standby"]
    probe = lab.run_in("c", [sys.executable, "-c",
                             "import socket\ntry:\n socket.create_connection(('%s', 7000), timeout=1).close(); "
                             "print('connected')\nexcept OSError as e:\n print('refused', e)" % LWIP[role]])
    after = status(lab, role)["roam_dropped_standby"]
    if "connected" in probe.stdout or after <= before:
        raise Failure("standby %s: %s; roam_dropped_standby %d -> %d" % (role, probe.stdout.strip(), before, after))
    log("ok   - standby %s dropped a client SYN (roam_dropped_standby %d -> %d)" % (role, before, after))
    lab.stop_cleanly(["client"] + ["server_" + r for r in ROLES])


if __name__ == "__main__":
    netns_lab.run("ro", main, up_args=["--origin"])
