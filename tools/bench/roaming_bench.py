#!/usr/bin/env python3
"""tools/bench/run roaming: seed 002 Fig. 2(b), the no-attack and roaming lines.

A request/response service (echo: a 64-byte request, its answer, then 10 ms of think
time, for --seconds) through a pool of three roam-servers (namespaces s, s2, o of a lab
made with `topology up NAME --origin`) and the strict NAT of tools/netns/nat before the
client. Two runs of the same lab, processes and path:

  no_roaming  the pool's epoch is a day long: one member serves the whole run (the
              reference: the paper's "no attack" line)
  roaming     epochs of --epoch seconds (default 3): the active member changes on the
              chain's schedule and the sessions follow every roam (PROTOCOL.md 13.6)

Figures (ms; the JSON's last line): response_ms_no_roaming and response_ms_roaming (mean
response time), overhead_no_attack = roaming / no_roaming - 1 (paper: 0.14; goal <= 0.02),
gap_ms_per_roam (the longest response among requests sent within 1 s of a boundary where
the active member changed, worst of all roams; the reference is the no-roaming run's worst
response: gap_reference_ms), roams, p50/p99 of both runs, samples of both (every response
time, ms). Left out (not measured): the paper's "attack without roaming" and
"replication" lines, and the discovery delays (no attacker here).

Needs root; run through tools/bench/roaming.sh (it deletes the lab on every exit path).
"""
import argparse
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "netns"))
import netns_lab  # noqa: E402
from netns_lab import NAT, ROAM_CLIENT, ROAM_SERVER, ROAMCTL, TOPOLOGY, Failure, PacedReader  # noqa: E402

ROLES = ["s", "s2", "o"]
LWIP = {"s": "198.18.12.2", "s2": "198.18.13.2", "o": "198.18.14.2"}
CONTROL = {"s": "198.18.2.1:7100", "s2": "198.18.3.1:7100", "o": "198.18.4.1:7100"}
LENGTH = 4096
PAPER_OVERHEAD = 0.14

# In c: request/response rounds for SECONDS; prints "T_SECONDS RTT_MS" per round (wall
# clock at the request), then "done".
REQUESTS = """
import socket, sys, time
s = socket.create_connection(("127.0.0.1", 9000), timeout=10)
s.settimeout(30)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
end = time.monotonic() + float(sys.argv[1])
req = b"x" * 64
while time.monotonic() < end:
    t, t0 = time.time(), time.monotonic()
    s.sendall(req)
    got = 0
    while got < len(req):
        part = s.recv(len(req) - got)
        if not part:
            sys.exit("closed")
        got += len(part)
    print("%.3f %.3f" % (t, (time.monotonic() - t0) * 1000), flush=True)
    time.sleep(0.01)
print("done", flush=True)
"""


def blake(label, key):
    return hashlib.blake2b(label + key, digest_size=32).digest()


def active_members(seed, count):
    """S_i for epochs 1..count (PROTOCOL.md 13.1-13.2)."""
    keys = [seed]
    for _ in range(LENGTH):
        keys.append(blake(b"roamstack chain v1", keys[-1]))
    keys.reverse()
    return [(int.from_bytes(blake(b"roamstack roam server v1", keys[i])[:8], "big") * len(ROLES)) >> 64
            for i in range(1, count + 1)]


def write_pool(directory, seed, start, epoch_s):
    seed_path = os.path.join(directory, "pool.chain")
    if not os.path.exists(seed_path):
        fd = os.open(seed_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (base64.b64encode(seed).decode() + "\n").encode())
        os.close(fd)
    path = os.path.join(directory, "pool-%d.conf" % epoch_s)
    with open(path, "w") as f:
        f.write("seed pool.chain\nlength %d\nstart %d\nepoch %d\nm 0\nupdate-seconds 1\n" % (LENGTH, start, epoch_s))
        for role in ROLES:
            f.write("member %s:7000 control %s\n" % (LWIP[role], CONTROL[role]))
    return path


def run_phase(lab, seed, epoch_s, seconds, label):
    start = int(time.time()) - 1
    pool = write_pool(lab.workdir, seed, start, epoch_s)
    names = []
    for role in ROLES:
        name = "%s_%s" % (label, role)
        lab.start(name, role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", LWIP[role], "--control", CONTROL[role],
                               "--roam-pool", pool] + lab.pool().server_args(role) + ["echo"])
        names.append(name)
    for name in names:
        lab.wait_log(name, "interface up")
    client = label + "_client"
    lab.start(client, "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", "198.18.11.2",
                            "-L", "127.0.0.1:9000:%s:7000" % LWIP["s"]])
    lab.wait_log(client, "interface up")
    # A first connection brings the channel and the schedule; the measured one dials the
    # active member.
    subprocess.run([TOPOLOGY, "exec", lab.name, "c", sys.executable, "-c",
                    "import socket; socket.create_connection(('127.0.0.1', 9000), timeout=5).close()"],
                   capture_output=True)
    lab.wait_log(client, "roam schedule from", seconds=20)
    out = subprocess.run([TOPOLOGY, "exec", lab.name, "c", sys.executable, "-c", REQUESTS, str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 120)
    lab.stop_cleanly([client] + names)
    lines = out.stdout.splitlines()
    if not lines or lines[-1] != "done":
        raise Failure("%s: the request stream broke: %s %s" % (label, lines[-2:], out.stderr[-300:]))
    samples = [tuple(map(float, x.split())) for x in lines[:-1]]
    return start, samples


def member_status(lab, role):
    out = lab.run_in("r", [ROAMCTL, "status", "--server", CONTROL[role]], timeout=30)
    if out.returncode != 0:
        raise Failure("roamctl status %s: %s" % (role, out.stderr.strip()))
    return json.loads(out.stdout)


DEAD_RESUME_AFTER_MS = 1000


def run_dead_server(lab, seed, epoch_s):
    """Kill -9 of the member holding a files download; returns (recovery_ms, byte_exact, details)."""
    start = int(time.time()) - 1
    pool = write_pool(lab.workdir, seed, start, epoch_s)
    members = active_members(seed, 400)
    key = os.path.join(lab.workdir, "checkpoint.key")
    if not os.path.exists(key):
        netns_lab.run_tool([ROAMCTL, "genkey", "--out", key], "roamctl genkey")
    root = os.path.join(lab.workdir, "files")
    os.makedirs(root, exist_ok=True)
    rate, size = 1024 * 1024, 12 * 1024 * 1024
    block = hashlib.sha256(b"dead server").digest() * 2048
    digest = hashlib.sha256()
    with open(os.path.join(root, "dead.bin"), "wb") as f:
        for _ in range(size // len(block)):
            f.write(block)
            digest.update(block)
    names = {}
    for role in ROLES:
        names[role] = "dead_%s" % role
        lab.start(names[role], role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", LWIP[role], "--control",
                                      CONTROL[role], "--roam-pool", pool, "--checkpoint-seed", key,
                                      "--checkpoint-interval-ms", "200"] + lab.pool().server_args(role)
                  + ["files", "--root", root])
    for role in ROLES:
        lab.wait_log(names[role], "interface up")
    lab.start("dead_client", "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", "198.18.11.2", "--resume-after-ms",
                                   str(DEAD_RESUME_AFTER_MS), "-L", "127.0.0.1:9000:%s:7000" % LWIP["s"]])
    lab.wait_log("dead_client", "interface up")
    reader = PacedReader(lab, "dead.bin", rate)
    try:
        lab.wait_log("dead_client", "roam schedule from", seconds=20)
        begun = time.monotonic()
        while True:
            if reader.failed():
                raise Failure("dead_server: " + reader.failed())
            now = time.time()
            e = int((now - start) // epoch_s) + 1
            into = now - (start + (e - 1) * epoch_s)
            if time.monotonic() - begun > 2 and reader.received() > 0 and 0.4 <= into < 0.8:
                break
            if time.monotonic() - begun > 30:
                raise Failure("dead_server: the download did not start")
            time.sleep(0.02)
        victim = ROLES[members[e - 1]]
        lab.procs[names[victim]].kill()
        killed = time.monotonic()
        lab.procs[names[victim]].wait()
        live = [r for r in ROLES if r != victim]
        recovery_ms = None
        while time.monotonic() - killed < 30 and recovery_ms is None:
            for role in live:
                if member_status(lab, role)["resumes_done"] >= 1:
                    recovery_ms = (time.monotonic() - killed) * 1000
                    resumed_at = role
            time.sleep(0.05)
        if recovery_ms is None:
            raise Failure("dead_server: no member resumed the session within 30 s of the kill")
        deadline = time.monotonic() + 60
        while not reader.done() and not reader.failed() and time.monotonic() < deadline:
            time.sleep(0.2)
        words = (reader.done() or "").split()
        exact = len(words) == 3 and int(words[1]) == size and words[2] == digest.hexdigest()
    finally:
        reader.kill()
    lab.stop_cleanly(["dead_client"] + [names[r] for r in live])
    return recovery_ms, exact, "killed %s (epoch %d), resumed at %s" % (victim, e, resumed_at)


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100.0 * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lab", default="rb%04d" % (os.getpid() % 10000))
    parser.add_argument("--seconds", type=float, default=30.0, help="each run's length (default 30)")
    parser.add_argument("--epoch", type=int, default=3, help="the roaming run's epoch unit, seconds (default 3)")
    parser.add_argument("--reps", type=int, default=1,
                        help="pairs of runs, alternating no_roaming and roaming (default 1); figures over all")
    parser.add_argument("--no-dead-server", action="store_true", help="skip the dead_server run")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("roaming_bench: needs root", file=sys.stderr)
        return 77
    workdir = tempfile.mkdtemp(prefix="roam-bench-")
    lab = netns_lab.Lab(args.lab, workdir)
    runs = []  # (start, samples) of each roaming run
    try:
        up = subprocess.run([TOPOLOGY, "up", args.lab, "--origin"], capture_output=True, text=True)
        if up.returncode != 0:
            raise Failure("topology up: " + up.stderr)
        nat = subprocess.run([NAT, "on", args.lab], capture_output=True, text=True)
        if nat.returncode != 0:
            raise Failure("nat on: " + nat.stderr)
        seed = os.urandom(32)
        reference, roaming = [], []
        for i in range(max(1, args.reps)):
            reference += run_phase(lab, seed, 86400, args.seconds, "no_roaming%d" % i)[1]
            start_i, samples = run_phase(lab, seed, args.epoch, args.seconds, "roaming%d" % i)
            runs.append((start_i, samples))
            roaming += samples
        dead = None
        if not args.no_dead_server:
            # Without the NAT: a resumed connection does not cross it yet (PROTOCOL.md 14.7).
            off = subprocess.run([NAT, "off", args.lab], capture_output=True, text=True)
            if off.returncode != 0:
                raise Failure("nat off: " + off.stderr)
            dead = run_dead_server(lab, seed, args.epoch)
    except Failure as e:
        print("roaming_bench: FAIL %s (logs in %s)" % (e, workdir), file=sys.stderr)
        lab.kill_all()
        return 1
    finally:
        lab.kill_all()
        subprocess.run([TOPOLOGY, "down", args.lab], capture_output=True)

    members = active_members(seed, int(args.seconds / args.epoch) + 200)
    # The longest response among the requests sent from 1 s before to 1 s after each roam
    # (one sent just before the boundary and answered after the move counts too).
    roam_times, gaps = [], []
    for start, samples in runs:
        t_first, t_last = samples[0][0], samples[-1][0]
        for i in range(2, len(members) + 1):
            t = start + (i - 1) * args.epoch
            if members[i - 1] != members[i - 2] and t_first < t < t_last:
                roam_times.append(t)
                around = [rtt for (at, rtt) in samples if t - 1.0 <= at < t + 1.0]
                if around:
                    gaps.append(max(around))
    ref_rtt = [r for _, r in reference]
    roam_rtt = [r for _, r in roaming]
    mean_ref, mean_roam = statistics.mean(ref_rtt), statistics.mean(roam_rtt)
    out = {
        "bench": "roaming",
        "seconds": args.seconds,
        "reps": max(1, args.reps),
        "epoch_s": args.epoch,
        "members": len(ROLES),
        "roams": len(roam_times),
        "requests_no_roaming": len(ref_rtt),
        "requests_roaming": len(roam_rtt),
        "response_ms_no_roaming": round(mean_ref, 3),
        "response_ms_roaming": round(mean_roam, 3),
        "overhead_no_attack": round(mean_roam / mean_ref - 1, 4),
        "paper_overhead_no_attack": PAPER_OVERHEAD,
        "p50_ms_no_roaming": round(percentile(ref_rtt, 50), 3),
        "p50_ms_roaming": round(percentile(roam_rtt, 50), 3),
        "p99_ms_no_roaming": round(percentile(ref_rtt, 99), 3),
        "p99_ms_roaming": round(percentile(roam_rtt, 99), 3),
        "gap_ms_per_roam": round(max(gaps), 3) if gaps else None,
        "gap_ms_per_roam_median": round(statistics.median(gaps), 3) if gaps else None,
        "gap_reference_ms": round(max(ref_rtt), 3),
        "recovery_ms_dead_server": round(dead[0], 1) if dead else None,
        "resume_after_ms_dead_server": DEAD_RESUME_AFTER_MS if dead else None,
        "byte_exact_dead_server": dead[1] if dead else None,
        "nat_dead_server": False if dead else None,
        "not_measured": ["attack without roaming", "replication", "discovery delays 0-60 s"],
        "samples": {"response_ms_no_roaming": [round(r, 3) for r in ref_rtt],
                    "response_ms_roaming": [round(r, 3) for r in roam_rtt],
                    "gap_ms_per_roam": [round(g, 3) for g in gaps]},
    }
    print("roaming: %d requests in %.0f s each; response %.3f ms roaming vs %.3f ms one member (same run): "
          "overhead_no_attack %+.2f %% (paper 14 %%, goal <= 2 %%); %d roams, worst response around a roam "
          "%s ms (median %s; no-roaming worst %.1f ms)" % (
              len(roam_rtt), args.seconds, mean_roam, mean_ref, 100 * out["overhead_no_attack"], len(roam_times),
              out["gap_ms_per_roam"], out["gap_ms_per_roam_median"], max(ref_rtt)))
    if dead:
        print("roaming: dead server (%s): recovered %.0f ms after the kill (client silence bound %d ms), "
              "download byte-exact: %s" % (dead[2], dead[0], DEAD_RESUME_AFTER_MS, dead[1]))
    shutil_rm(workdir)
    print(json.dumps(out, separators=(",", ":")))
    return 0


def shutil_rm(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
