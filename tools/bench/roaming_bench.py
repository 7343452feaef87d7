#!/usr/bin/env python3
"""tools/bench/run roaming: seed 002 Fig. 2(b): response time with and without attack,
roaming against one member and against replication, over the attacker's discovery delay.

A request/response service (echo: a 64-byte request, its answer, then 10 ms of think
time, for --seconds) through a pool of three roam-servers (namespaces s, s2, o of a lab
made with `topology up NAME --origin`) and the strict NAT of tools/netns/nat before the
client. Runs of the same lab, processes and path:

  no_roaming  the pool's epoch is a day long: one member serves the whole run (the
              reference: the paper's "no attack" line)
  roaming     epochs of --epoch seconds (default 3): the active member changes on the
              chain's schedule and the sessions follow every roam (PROTOCOL.md 13.6)

and, unless --no-attack, on the same links shaped to --link-mbit each (tbf on the
router's egress toward each member, all runs including the two above), with the
link-oriented attacker of roaming_attack.py (a flood of --attack-load times one link,
from the router's namespace):

  attack_no_roaming     one member serves; it is flooded from the first request
  roaming_attack_dD     roaming, and the follow attacker floods the member that became
                        active D * epoch / 60 s after it did (D from --delays: seconds of
                        the paper's 60 s epoch), until it discovers the next one
  replication_attack    every member serves on its own (no pool), one request stream to
                        each side by side; the flood is diluted over all three

Figures (ms; the JSON's last line): response_ms_no_roaming and response_ms_roaming (mean
response time), overhead_no_attack = roaming / no_roaming - 1 (paper: 0.14; goal <= 0.02),
gap_ms_per_roam (the longest response among requests sent within 1 s of a boundary where
the active member changed, worst of all roams; the reference is the no-roaming run's worst
response: gap_reference_ms), roams, p50/p99 of both runs, samples of both (every response
time, ms); with the attack runs response_ms_attack_no_roaming,
response_ms_roaming_attack_dD per delay, response_ms_replication (and _dD: one run stands
for every delay, static replicas are discovered once), the paper's setting as paper_*
keys, and the samples of every run.

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
import roaming_attack  # noqa: E402

ROLES = ["s", "s2", "o"]
LWIP = {"s": "198.18.12.2", "s2": "198.18.13.2", "o": "198.18.14.2"}
CONTROL = {"s": "198.18.2.1:7100", "s2": "198.18.3.1:7100", "o": "198.18.4.1:7100"}
LENGTH = 4096
PAPER_OVERHEAD = 0.14
# Seed 002 section V: epochs of 60 s, discovery delays 0-60 s, 2 Mbit/s server links, a
# 1 MB file taking about 4 s to serve in an empty network. The text gives no plotted value
# of Fig. 2(b) besides the 14 % no-attack overhead; its claims are PAPER_CLAIMS.
PAPER_EPOCH_S = 60
PAPER_DELAYS_S = [0, 15, 30, 45, 60]
PAPER_LINK_MBIT = 2
PAPER_SERVICE_S_EMPTY = 4
PAPER_CLAIMS = ["roaming under follow attack: the response time falls as the discovery delay grows "
                "(d = epoch: the attacker always floods the wrong server)",
                "roaming beats replication even at d = 0 (the attack's flows are dropped every epoch)",
                "no attack: roaming 14 % above replication"]

# In c: request/response rounds for SECONDS to local port PORT (default 9000); prints
# "T_SECONDS RTT_MS" per round (wall clock at the request), then "done".
REQUESTS = """
import socket, sys, time
port = int(sys.argv[2]) if len(sys.argv) > 2 else 9000
s = socket.create_connection(("127.0.0.1", port), timeout=10)
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


def run_phase(lab, seed, epoch_s, seconds, label, attack=None, replication=False):
    """One run of the request stream; returns (pool start, [(t, rtt_ms)], attack summary).

    attack: None, or {"delay_s", "pps"}: the follow attacker of roaming_attack with that
    discovery delay (the replicas of a replication run are all discovered at once, and
    its flood is diluted over them). replication: every member serves on its own (no
    pool, no roaming) and the client runs one stream to each, side by side."""
    start = int(time.time()) - 1
    pool = write_pool(lab.workdir, seed, start, epoch_s)
    names = []
    for role in ROLES:
        name = "%s_%s" % (label, role)
        roaming = [] if replication else ["--roam-pool", pool]
        lab.start(name, role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", LWIP[role], "--control", CONTROL[role]]
                  + roaming + lab.pool().server_args(role) + ["echo"])
        names.append(name)
    for name in names:
        lab.wait_log(name, "interface up")
    client = label + "_client"
    targets = ROLES if replication else ["s"]
    forwards = []
    for i, role in enumerate(targets):
        forwards += ["-L", "127.0.0.1:%d:%s:7000" % (9000 + i, LWIP[role])]
    lab.start(client, "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", "198.18.11.2"] + forwards)
    lab.wait_log(client, "interface up")
    if not replication:
        # A first connection brings the channel and the schedule; the measured one dials
        # the active member.
        subprocess.run([TOPOLOGY, "exec", lab.name, "c", sys.executable, "-c",
                        "import socket; socket.create_connection(('127.0.0.1', 9000), timeout=5).close()"],
                       capture_output=True)
        lab.wait_log(client, "roam schedule from", seconds=20)
    attacker, schedule = None, []
    if attack:
        attacker = roaming_attack.Attacker(lab.name, TOPOLOGY, os.path.join(lab.workdir, label + "_attack.log"),
                                           attack["pps"], seconds + 60)
        now = time.time()
        window = (now, now + seconds + 60)
        if replication:
            schedule = [(window[0], window[1], [LWIP[r] for r in ROLES])]
        else:
            members = active_members(seed, int((window[1] - start) / epoch_s) + 2)
            schedule = [(b, e, [LWIP[ROLES[m]]]) for b, e, m in
                        roaming_attack.follow_schedule(start, epoch_s, members, attack["delay_s"], *window)]
        attacker.follow(schedule)
    streams = [subprocess.Popen([TOPOLOGY, "exec", lab.name, "c", sys.executable, "-c", REQUESTS, str(seconds),
                                 str(9000 + i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for i in range(len(targets))]
    outputs = []
    try:
        for p in streams:
            try:
                outputs.append(p.communicate(timeout=seconds + 120))
            except subprocess.TimeoutExpired:
                p.kill()
                outputs.append(p.communicate())
    finally:
        flood = attacker.stop() if attacker else None
    lab.stop_cleanly([client] + names)
    samples = []
    for out, err in outputs:
        lines = out.splitlines()
        if not lines or lines[-1] != "done":
            raise Failure("%s: the request stream broke: %s %s" % (label, lines[-2:], err[-300:]))
        samples += [tuple(map(float, x.split())) for x in lines[:-1]]
    summary = None
    if attacker:
        try:
            flood = json.loads(flood)
        except ValueError:
            pass  # the log's last line as it is
        summary = {"flood": flood, "flooded_s": round(attacker.flooded_s, 2)}
        if samples:
            # How much of the stream the flood hit the member serving it (the rest of the
            # time it hit a member that was no longer active, or nothing yet).
            t0, t1 = min(t for t, _ in samples), max(t for t, _ in samples)
            summary["active_flooded_fraction"] = round(
                flooded_active_seconds(schedule, start, epoch_s, seed, t0, t1, replication) / max(t1 - t0, 1e-9), 3)
    return start, samples, summary


def flooded_active_seconds(schedule, start, epoch_s, seed, t0, t1, replication):
    """Seconds of [t0, t1) in which the schedule floods a member serving the stream."""
    if replication:
        return sum(max(0.0, min(e, t1) - max(b, t0)) for b, e, _ in schedule)
    members = active_members(seed, int((t1 - start) / epoch_s) + 2)
    total = 0.0
    for b, e, addresses in schedule:
        for i, member in enumerate(members):
            lo, hi = max(b, t0, start + i * epoch_s), min(e, t1, start + (i + 1) * epoch_s)
            if hi > lo and LWIP[ROLES[member]] in addresses:
                total += hi - lo
    return total


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


def delay_label(d):
    return "%g" % d


def run_attacks(lab, seed, args, delays, seconds, errors):
    """The attack runs on the shaped links: {name: (samples, summary)}. A run whose stream
    broke is left out and named in errors; the others go on."""
    pps = roaming_attack.flood_pps(args.link_mbit, args.attack_load)
    # A member that never moves is discovered once: its discovery delay only shifts the
    # attack's start, so the static runs are flooded from their first request.
    plan = [("attack_no_roaming", 86400, 0.0, False)]
    plan += [("roaming_attack_d" + delay_label(d), args.epoch, d * args.epoch / PAPER_EPOCH_S, False)
             for d in delays]
    if not args.no_replication:
        plan.append(("replication_attack", 86400, 0.0, True))
    out = {}
    for name, epoch_s, delay_s, replication in plan:
        try:
            _, samples, summary = run_phase(lab, seed, epoch_s, seconds, name, replication=replication,
                                            attack={"delay_s": delay_s, "pps": pps})
            summary["delay_s"] = round(delay_s, 3)
            out[name] = (samples, summary)
            print("roaming: %s: %d requests, response %.3f ms (flooded %.1f s of %.0f; %s)" % (
                name, len(samples), statistics.mean(r for _, r in samples), summary["flooded_s"], seconds,
                summary["flood"]), file=sys.stderr, flush=True)
        except (Failure, RuntimeError) as e:
            errors.append("%s: %s" % (name, str(e)[:300]))
            print("roaming: %s broke: %s" % (name, str(e)[:300]), file=sys.stderr, flush=True)
            lab.kill_all()
    return out


def attack_figures(attacked, args, delays, attack_seconds, errors):
    """The JSON keys of the attack runs (Fig. 2(b)'s attack lines)."""
    def mean_of(name):
        return round(statistics.mean(r for _, r in attacked[name][0]), 3) if name in attacked else None

    out = {
        "link_mbit": args.link_mbit,
        "queue_ms": args.queue_ms,
        "attack_load": args.attack_load,
        "attack_pps": round(roaming_attack.flood_pps(args.link_mbit, args.attack_load), 1),
        "attack_bytes": roaming_attack.FLOOD_BYTES,
        "attack_seconds": attack_seconds,
        "delays": delays,
        "delay_scale": round(args.epoch / PAPER_EPOCH_S, 4),
        "delays_run_s": [round(d * args.epoch / PAPER_EPOCH_S, 3) for d in delays],
        "response_ms_attack_no_roaming": mean_of("attack_no_roaming"),
    }
    for d in delays:
        out["response_ms_roaming_attack_d" + delay_label(d)] = mean_of("roaming_attack_d" + delay_label(d))
    replication = mean_of("replication_attack")
    if not args.no_replication:
        out["response_ms_replication"] = replication
        # Static replicas: one run stands for every delay (see run_attacks).
        for d in delays:
            out["response_ms_replication_d" + delay_label(d)] = replication
        out["replication_runs"] = 1
    out["p99_ms_attack"] = {name: round(percentile([r for _, r in samples], 99), 3)
                            for name, (samples, _) in attacked.items()}
    out["requests_attack"] = {name: len(samples) for name, (samples, _) in attacked.items()}
    out["flood"] = {name: summary for name, (_, summary) in attacked.items()}
    out["errors"] = errors
    return out


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
    parser.add_argument("--no-attack", action="store_true",
                        help="skip the attack runs (and the link shaping they need): the no-attack lines only")
    parser.add_argument("--delays", default=",".join("%g" % d for d in PAPER_DELAYS_S),
                        help="discovery delays, in seconds of the paper's 60 s epoch (default 0,15,30,45,60); "
                             "each run's delay is D * --epoch / 60, so d / epoch is the paper's")
    parser.add_argument("--attack-seconds", type=float, default=20.0,
                        help="each attack run's length (default 20)")
    parser.add_argument("--link-mbit", type=float, default=10.0,
                        help="each member's access link, Mbit/s (tbf on the router; default 10)")
    parser.add_argument("--queue-ms", type=int, default=100, help="that link's queue, ms (default 100)")
    parser.add_argument("--attack-load", type=float, default=4.0,
                        help="the flood, in multiples of one member link (default 4)")
    parser.add_argument("--no-replication", action="store_true", help="skip the replication run")
    args = parser.parse_args()
    try:
        delays = [float(x) for x in args.delays.split(",") if x.strip()]
    except ValueError:
        parser.error("--delays: want numbers, e.g. 0,15,30")
    if not delays or any(d < 0 for d in delays):
        parser.error("--delays: want delays >= 0")
    delays = sorted(set(delays))  # one run per delay, drawn left to right
    if args.link_mbit <= 0 or args.queue_ms <= 0 or args.attack_load <= 0 or args.attack_seconds <= 0:
        parser.error("--link-mbit, --queue-ms, --attack-load and --attack-seconds want values > 0")
    attack_seconds = args.attack_seconds
    if os.geteuid() != 0:
        print("roaming_bench: needs root", file=sys.stderr)
        return 77
    workdir = tempfile.mkdtemp(prefix="roam-bench-")
    lab = netns_lab.Lab(args.lab, workdir)
    runs = []  # (start, samples) of each roaming run
    errors = []  # attack runs that broke (the bench goes on without their figure, exits 1)
    try:
        up = subprocess.run([TOPOLOGY, "up", args.lab, "--origin"], capture_output=True, text=True)
        if up.returncode != 0:
            raise Failure("topology up: " + up.stderr)
        nat = subprocess.run([NAT, "on", args.lab], capture_output=True, text=True)
        if nat.returncode != 0:
            raise Failure("nat on: " + nat.stderr)
        seed = os.urandom(32)
        if not args.no_attack:
            # Every run, the no-attack reference too, on the same shaped links.
            roaming_attack.shape_links(args.lab, TOPOLOGY, args.link_mbit, args.queue_ms, ROLES)
        reference, roaming = [], []
        for i in range(max(1, args.reps)):
            reference += run_phase(lab, seed, 86400, args.seconds, "no_roaming%d" % i)[1]
            start_i, samples, _ = run_phase(lab, seed, args.epoch, args.seconds, "roaming%d" % i)
            runs.append((start_i, samples))
            roaming += samples
        attacked = {} if args.no_attack else run_attacks(lab, seed, args, delays, attack_seconds, errors)
        dead = None
        if not args.no_attack:
            roaming_attack.unshape_links(lab.name, TOPOLOGY, ROLES)
        if not args.no_dead_server:
            # Through the same strict NAT: the resumed connection crosses it with the
            # handover token of its RESUMED (PROTOCOL.md 14.3).
            dead = run_dead_server(lab, seed, args.epoch)
    except (Failure, RuntimeError) as e:
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
        "nat_dead_server": True if dead else None,
        "paper_epoch_s": PAPER_EPOCH_S,
        "paper_delays_s": PAPER_DELAYS_S,
        "paper_link_mbit": PAPER_LINK_MBIT,
        "paper_service_s_empty_network": PAPER_SERVICE_S_EMPTY,
        "paper_response_values": None,
        "paper_claims": PAPER_CLAIMS,
        "samples": {"response_ms_no_roaming": [round(r, 3) for r in ref_rtt],
                    "response_ms_roaming": [round(r, 3) for r in roam_rtt],
                    "gap_ms_per_roam": [round(g, 3) for g in gaps]},
    }
    if args.no_attack:
        out["not_measured"] = ["attack without roaming", "replication", "discovery delays 0-60 s"]
        out["link_mbit"] = None
    else:
        out.update(attack_figures(attacked, args, delays, attack_seconds, errors))
        for name, (samples, _) in attacked.items():
            key = "response_ms_replication" if name == "replication_attack" else "response_ms_" + name
            out["samples"][key] = [round(r, 3) for _, r in samples]
    print("roaming: %d requests in %.0f s each; response %.3f ms roaming vs %.3f ms one member (same run): "
          "overhead_no_attack %+.2f %% (paper 14 %%, goal <= 2 %%); %d roams, worst response around a roam "
          "%s ms (median %s; no-roaming worst %.1f ms)" % (
              len(roam_rtt), args.seconds, mean_roam, mean_ref, 100 * out["overhead_no_attack"], len(roam_times),
              out["gap_ms_per_roam"], out["gap_ms_per_roam_median"], max(ref_rtt)))
    if dead:
        print("roaming: dead server (%s): recovered %.0f ms after the kill (client silence bound %d ms), "
              "download byte-exact: %s" % (dead[2], dead[0], DEAD_RESUME_AFTER_MS, dead[1]))
    if not args.no_attack:
        line = ", ".join("d=%s %s" % (delay_label(d), out["response_ms_roaming_attack_d" + delay_label(d)])
                         for d in delays)
        print("roaming: under attack (%g Mbit/s links, flood %.1f x a link): one member %s ms; roaming %s ms; "
              "replication %s ms; no attack %.3f ms (one member), %.3f ms (roaming)%s" % (
                  args.link_mbit, args.attack_load, out["response_ms_attack_no_roaming"], line,
                  out.get("response_ms_replication"), mean_ref, mean_roam,
                  "; broke: %s" % errors if errors else ""))
    shutil_rm(workdir)
    print(json.dumps(out, separators=(",", ":")))
    return 1 if errors else 0  # an attack run that broke fails the bench, its figures printed


def shutil_rm(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
