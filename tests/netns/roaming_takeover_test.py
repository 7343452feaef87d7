#!/usr/bin/env python3
"""The pool takes over a dead member's session (issue 14; PROTOCOL.md 13.6, 14.5): a
roam-client without --resume-to resumes a killed member's connection at the member its
schedule names, from its checkpoint. No NAT: a resumed connection does not cross the strict NAT of
tools/netns/nat yet (RESUMED carries no handover token, so the client re-points without
the synthetic handshake of PROTOCOL.md 6 and the NAT drops the new flow; see 14.7).

  c   roam-client on rtun0 (198.18.11.2): -L 9000 -> 198.18.12.2:7000 (files),
      --resume-after-ms 1000, no --resume-to, --metrics 127.0.0.1:9100
  r   a plain router (no NAT: see above)
  s, s2, o  roam-server files on 198.18.12.2, .13.2, .14.2: members 0..2 of one pool
      (epochs of 3 s, m = 0), --checkpoint-seed (one seed file), pushes every 200 ms

The schedule is computed here (roaming_test.schedule). A paced file download runs; 0.4 s
into an epoch whose member holds the session (the active one: sessions follow each roam)
that member gets SIGKILL. The client, silent for 1 s, resumes the connection at the first
member other than the dead one in the schedule from then on (the next epoch's, when the
dead one is still active).

Checks: the download is SHA-256 exact; the member the client names is one Python's
schedule names for an epoch between the kill and the resume; that member counts one
resume done and no refusal; the client counts one resume done, none to a --resume-to
server, and one by the schedule (resumes_to_active + resumes_to_next_epoch).
Exit 0 passed, 1 failed, 77 skipped (not root). About 30 s plain.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import ROAM_CLIENT, ROAM_SERVER, ROAMCTL, Failure, PacedReader, log  # noqa: E402
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
    out = lab.run_in("c", [sys.executable, "-c", FETCH, METRICS], timeout=30)
    values = {}
    for line in out.stdout.splitlines():
        words = line.split()
        if len(words) == 2 and not line.startswith("#"):
            try:
                values[words[0]] = int(float(words[1]))
            except ValueError:
                pass
    return values


def first_other(plan, epoch, dead):
    """The first member other than `dead` in the schedule from `epoch` on (PROTOCOL.md 14.5)."""
    for _, _, member in plan[epoch - 1:]:
        if member != dead:
            return member
    return None


def main(lab):
    roaming_test.EPOCH_S = EPOCH_S  # schedule() and write_pool() read it
    seed = os.urandom(32)
    start = int(time.time()) - 1
    plan = roaming_test.schedule(seed, start, 200)
    pool_file = roaming_test.write_pool(lab.workdir, seed, start)
    checkpoint_seed = os.path.join(lab.workdir, "checkpoint.key")
    netns_lab.run_tool([ROAMCTL, "genkey", "--out", checkpoint_seed], "roamctl genkey")
    root = os.path.join(lab.workdir, "files")
    os.makedirs(root)
    rate = 1024 * 1024
    size = int(rate * 14)
    digest = write_file(os.path.join(root, "one"), size)

    for role in ROLES:
        lab.start("server_" + role, role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", LWIP[role], "--control",
                                           CONTROL[role], "--roam-pool", pool_file, "--checkpoint-seed",
                                           checkpoint_seed, "--checkpoint-interval-ms", "200"]
                  + lab.pool().server_args(role) + ["files", "--root", root])
    for role in ROLES:
        lab.wait_log("server_" + role, "interface up")
    lab.start("client", "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", "198.18.11.2", "--resume-after-ms",
                              "1000", "--metrics", METRICS, "-L", "127.0.0.1:9000:%s:7000" % LWIP["s"]])
    lab.wait_log("client", "interface up")

    reader = PacedReader(lab, "one", rate)
    try:
        lab.wait_log("client", "roam schedule from", seconds=20)
        # 1. Kill the member holding the session: 0.4 s into an epoch (its move has landed
        # on the active member), once the download has run 2 s (checkpoints were pushed).
        begun = time.monotonic()
        while True:
            if reader.failed():
                raise Failure(reader.failed())
            now = time.time()
            e = epoch_at(start, now)
            into = now - plan[e - 1][1]
            if time.monotonic() - begun > 2 and reader.received() > 0 and 0.4 <= into < 0.8:
                break
            if time.monotonic() - begun > 30:
                raise Failure("the download did not start: %s" % reader.lines[-3:])
            time.sleep(0.02)
        dead = plan[e - 1][2]
        victim = ROLES[dead]
        lab.procs["server_" + victim].kill()
        lab.procs["server_" + victim].wait()
        killed, kill_epoch, at = time.monotonic(), e, reader.received()
        log("# killed %s (member %d, active in epoch %d) with SIGKILL at %.1f MiB of %.1f" % (
            victim, dead, e, at / 1048576.0, size / 1048576.0))

        # 2. The download finishes, byte-exact.
        deadline = time.monotonic() + 60
        while not reader.done():
            if reader.failed():
                raise Failure(reader.failed())
            if time.monotonic() > deadline:
                raise Failure("the download did not end: %d of %d bytes" % (reader.received(), size))
            time.sleep(0.2)
        words = reader.done().split()
        if int(words[1]) != size or words[2] != digest:
            raise Failure("file: got %s, want %d bytes %s" % (reader.done(), size, digest))
        resume_epoch = epoch_at(start, time.time())
    finally:
        reader.kill()
    log("ok   - the download of %d bytes is SHA-256 exact across the kill (%.1f s)" % (size,
                                                                                    time.monotonic() - killed))

    # 3. The client named a member the schedule names; it resumed the session, nothing refused.
    lines = [x for x in lab.log_text("client").splitlines() if "resuming it at" in x]
    if not lines:
        raise Failure("the client never resumed:\n" + lab.log_text("client")[-2000:])
    named = lines[0].rsplit(" ", 1)[1]
    expected = {LWIP[ROLES[first_other(plan, ep, dead)]] for ep in range(kill_epoch, resume_epoch + 1)}
    if named not in expected:
        raise Failure("the client resumed at %s; the schedule names %s" % (named, sorted(expected)))
    target = [r for r in ROLES if LWIP[r] == named][0]
    st = status(lab, target)
    refused = {k: v for k, v in st.items() if k.startswith("resume_refused_") and v}
    if st["resumes_done"] != 1 or refused:
        raise Failure("%s: resumes_done %d, refused %s" % (target, st["resumes_done"], refused))
    m = client_metrics(lab)
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
    log("INFO takeover: the client logged the resume %s" % lines[0].split("] ")[-1])
    lab.stop_cleanly(["client"] + ["server_" + r for r in ROLES if r != victim])


if __name__ == "__main__":
    netns_lab.run("rt", main, up_args=["--origin"])
