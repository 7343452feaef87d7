#!/usr/bin/env python3
"""The pool takes over a dead member's session (issue 14; PROTOCOL.md 13.6, 14.5): a
roam-client without --resume-to resumes a killed member's connection at the member its
schedule names, from its checkpoint, through the strict NAT of tools/netns/nat: the
RESUMED carries a NAT handover token and the client re-points the connection with the
synthetic handshake of PROTOCOL.md 6, without which the NAT drops the new flow.

  c   roam-client on rtun0 (198.18.11.2): -L 9000 -> 198.18.12.2:7000 (files),
      --resume-after-ms 1000, no --resume-to, --metrics 127.0.0.1:9100
  r   tools/netns/nat on: masquerade, forward policy drop, new flows only from a client
      SYN, strict conntrack (no mid-stream pickup)
  s, s2, o  roam-server files on 198.18.12.2, .13.2, .14.2: members 0..2 of one pool
      (epochs of 3 s, m = 0), --checkpoint-seed (one seed file), pushes every 200 ms

The schedule is computed here (roaming_test.schedule). A paced file download runs; 0.4 s
into an epoch whose member holds the session (the active one: sessions follow each roam)
that member gets SIGKILL. The client, silent for 1 s, resumes the connection at the first
member other than the dead one in the schedule from then on (the next epoch's, when the
dead one is still active).

Checks: the download is SHA-256 exact; the member the client names is one Python's
schedule names for an epoch between the kill and the resume; that member counts one
resume done and no refusal; the client counts one resume done, one RESUME sent, no
refusal, none to a --resume-to server, and one by the schedule (resumes_to_active +
resumes_to_next_epoch), it took a server for dead exactly once, and it re-pointed the
connection with the NAT handover (its log says so). Exactly one: the server finishes
sending (FIN) seconds before the paced reader has read the file, and a client that took
that silence for a death tried a second takeover, refused with reason 34 (PROTOCOL.md
14.7, apps/resume_silence.hpp).

Aids: ROAM_TEST_PCAP_DIR=DIR writes each node's link pcap there and copies the logs of a
passing run; ROAM_TEST_LOG_LEVEL=debug raises the nodes' log level.
Exit 0 passed, 1 failed, 77 skipped (not root). About 25 s plain.
"""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import NAT, ROAM_CLIENT, ROAM_SERVER, ROAMCTL, Failure, PacedReader, log  # noqa: E402
import netns_lab  # noqa: E402
import roaming_test  # noqa: E402
from roaming_test import CONTROL, LWIP, ROLES, epoch_at, status, write_file  # noqa: E402

EPOCH_S = 3
METRICS = "127.0.0.1:9100"
FETCH = """
import sys, urllib.request
with urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=10) as reply:
    print(reply.read().decode())
"""


def client_metrics(lab):
    return metrics(lab, "c", METRICS)


def metrics(lab, role, address):
    """The --metrics counters of the node in namespace `role` listening at `address`, by name."""
    out = lab.run_in(role, [sys.executable, "-c", FETCH, address], timeout=30)
    values = {}
    for line in out.stdout.splitlines():
        words = line.split()
        if len(words) == 2 and not line.startswith("#"):
            try:
                values[words[0]] = int(float(words[1]))
            except ValueError:
                pass
    return values


def nat_counters(lab):
    """The NAT's "invalid N blocked N admitted N" (tools/netns/nat counters), for the log."""
    out = subprocess.run([NAT, "counters", lab.name], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unavailable: " + out.stderr.strip()


def first_other(plan, epoch, dead):
    """The first member other than `dead` in the schedule from `epoch` on (PROTOCOL.md 14.5)."""
    for _, _, member in plan[epoch - 1:]:
        if member != dead:
            return member
    return None


def aids(name):
    """Debugging aids: ROAM_TEST_PCAP_DIR keeps each node's link traffic, ROAM_TEST_LOG_LEVEL its log level."""
    extra = []
    if os.environ.get("ROAM_TEST_PCAP_DIR"):
        extra += ["--pcap", os.path.join(os.environ["ROAM_TEST_PCAP_DIR"], name + ".pcap")]
    if os.environ.get("ROAM_TEST_LOG_LEVEL"):
        extra += ["--log-level", os.environ["ROAM_TEST_LOG_LEVEL"]]
    return extra


class PoolLab:
    """This test's lab (also roaming_partition_test's): the strict NAT on, members s, s2, o of
    a fresh pool (epochs of EPOCH_S s) serving files/one (`size` bytes) with checkpoints
    pushed every 200 ms, the client with --resume-after-ms 1000 and no --resume-to.
    `server_args`: more options for every member."""

    def __init__(self, lab, size, server_args=()):
        roaming_test.EPOCH_S = EPOCH_S  # schedule() and write_pool() read it
        seed = os.urandom(32)
        self.start = int(time.time()) - 1
        self.plan = roaming_test.schedule(seed, self.start, 200)
        pool_file = roaming_test.write_pool(lab.workdir, seed, self.start)
        checkpoint_seed = os.path.join(lab.workdir, "checkpoint.key")
        netns_lab.run_tool([ROAMCTL, "genkey", "--out", checkpoint_seed], "roamctl genkey")
        root = os.path.join(lab.workdir, "files")
        os.makedirs(root)
        self.size = size
        self.digest = write_file(os.path.join(root, "one"), size)
        nat = subprocess.run([NAT, "on", lab.name], capture_output=True, text=True)
        if nat.returncode != 0:
            raise Failure("nat on: " + nat.stderr)
        for role in ROLES:
            lab.start("server_" + role, role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", LWIP[role], "--control",
                                               CONTROL[role], "--roam-pool", pool_file, "--checkpoint-seed",
                                               checkpoint_seed, "--checkpoint-interval-ms", "200"]
                      + list(server_args) + aids("server_" + role) + lab.pool().server_args(role)
                      + ["files", "--root", root])
        for role in ROLES:
            lab.wait_log("server_" + role, "interface up")
        lab.start("client", "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", "198.18.11.2", "--resume-after-ms",
                                  "1000", "--metrics", METRICS] + aids("client")
                  + ["-L", "127.0.0.1:9000:%s:7000" % LWIP["s"]])
        lab.wait_log("client", "interface up")

    def wait_for_holder(self, lab, reader):
        """Waits until the download has run 2 s (checkpoints were pushed) and it is 0.4 s into
        an epoch (its move has landed on the active member, which holds the session); returns
        (epoch, member index)."""
        lab.wait_log("client", "roam schedule from", seconds=20)
        begun = time.monotonic()
        while True:
            if reader.failed():
                raise Failure(reader.failed())
            now = time.time()
            e = epoch_at(self.start, now)
            into = now - self.plan[e - 1][1]
            if time.monotonic() - begun > 2 and reader.received() > 0 and 0.4 <= into < 0.8:
                return e, self.plan[e - 1][2]
            if time.monotonic() - begun > 30:
                raise Failure("the download did not start: %s" % reader.lines[-3:])
            time.sleep(0.02)

    def check_download(self, reader, seconds=60):
        """Waits for the paced download to end; it must be SHA-256 exact."""
        deadline = time.monotonic() + seconds
        while not reader.done():
            if reader.failed():
                raise Failure(reader.failed())
            if time.monotonic() > deadline:
                raise Failure("the download did not end: %d of %d bytes" % (reader.received(), self.size))
            time.sleep(0.2)
        words = reader.done().split()
        if int(words[1]) != self.size or words[2] != self.digest:
            raise Failure("file: got %s, want %d bytes %s" % (reader.done(), self.size, self.digest))


def resumed_target(lab):
    """The member the client resumed its connection at (its first "resuming it at" line)."""
    lines = [x for x in lab.log_text("client").splitlines() if "resuming it at" in x]
    if not lines:
        raise Failure("the client never resumed:\n" + lab.log_text("client")[-2000:])
    return lines[0].split("resuming it at ", 1)[1].split()[0], lines[0]


def main(lab):
    rate = 1024 * 1024
    pool = PoolLab(lab, int(rate * 14))
    plan, start, size = pool.plan, pool.start, pool.size
    reader = PacedReader(lab, "one", rate)
    try:
        # 1. Kill the member holding the session.
        e, dead = pool.wait_for_holder(lab, reader)
        victim = ROLES[dead]
        nat_before = nat_counters(lab)
        lab.procs["server_" + victim].kill()
        lab.procs["server_" + victim].wait()
        killed, kill_epoch, at = time.monotonic(), e, reader.received()
        log("# killed %s (member %d, active in epoch %d) with SIGKILL at %.1f MiB of %.1f" % (
            victim, dead, e, at / 1048576.0, size / 1048576.0))

        # 2. The download finishes, byte-exact.
        pool.check_download(reader)
        resume_epoch = epoch_at(start, time.time())
    finally:
        reader.kill()
    log("ok   - the download of %d bytes is SHA-256 exact across the kill (%.1f s)" % (size,
                                                                                    time.monotonic() - killed))

    # 3. The client named a member the schedule names; it resumed the session.
    named, line = resumed_target(lab)
    expected = {LWIP[ROLES[first_other(plan, ep, dead)]] for ep in range(kill_epoch, resume_epoch + 1)}
    if named not in expected:
        raise Failure("the client resumed at %s; the schedule names %s" % (named, sorted(expected)))
    target = [r for r in ROLES if LWIP[r] == named][0]
    st = status(lab, target)
    refused = {k: v for k, v in st.items() if k.startswith("resume_refused_") and v}
    if st["resumes_done"] != 1 or refused:
        raise Failure("%s: resumes_done %d, refused %s" % (target, st["resumes_done"], refused))
    silences = [x.split("] ")[-1] for x in lab.log_text("client").splitlines() if " silent for " in x]
    if len(silences) != 1:
        raise Failure("the client took a server for dead %d times, not once: %s" % (len(silences), silences))
    m = client_metrics(lab)
    sent, refusals = m.get("roamstack_checkpoint_resumes_sent", 0), m.get("roamstack_checkpoint_resumes_refused", 0)
    if sent != 1 or refusals != 0:
        raise Failure("client counters: resumes_sent %d resumes_refused %d (want 1 and 0)" % (sent, refusals))
    done = m.get("roamstack_checkpoint_resumes_done", 0)
    fixed = m.get("roamstack_checkpoint_resumes_to_fixed", 0)
    active = m.get("roamstack_checkpoint_resumes_to_active", 0)
    next_epoch = m.get("roamstack_checkpoint_resumes_to_next_epoch", 0)
    none = m.get("roamstack_checkpoint_resumes_no_target", 0)
    if done != 1 or fixed != 0 or active + next_epoch < 1 or none != 0:
        raise Failure("client counters: resumes_done %d to_fixed %d to_active %d to_next_epoch %d no_target %d" % (
            done, fixed, active, next_epoch, none))
    log("ok   - the client resumed at %s (%s; schedule from epoch %d: %s), which rebuilt it: resumes_done 1, "
        "client resumes_to_active %d resumes_to_next_epoch %d" % (
            target, named, kill_epoch, " ".join(ROLES[p[2]] for p in plan[kill_epoch - 1:kill_epoch + 3]),
            active, next_epoch))
    handed = [x for x in lab.log_text("client").splitlines() if "resumed at" in x]
    if not handed or "(NAT handover)" not in handed[0]:
        raise Failure("the client did not re-point the resumed connection with the NAT handover: %s" % handed)
    log("ok   - the resumed connection crossed the strict NAT with the handover: %s" % handed[0].split("] ")[-1])
    log("INFO takeover: the client logged the resume %s" % line.split("] ")[-1])
    log("INFO NAT counters before the kill: %s; at the end: %s" % (nat_before, nat_counters(lab)))
    for line in lab.log_text("client").splitlines():
        if "[checkpoint]" in line or "handover to" in line:
            log("#   client: " + line)
    lab.stop_cleanly(["client"] + ["server_" + r for r in ROLES if r != victim])
    if os.environ.get("ROAM_TEST_PCAP_DIR"):
        for label in lab.procs:
            shutil.copy(os.path.join(lab.workdir, label + ".log"), os.environ["ROAM_TEST_PCAP_DIR"])


if __name__ == "__main__":
    netns_lab.run("rt", main, up_args=["--origin"])
