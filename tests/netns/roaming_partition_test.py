#!/usr/bin/env python3
"""The pool takes over a partitioned or stalled member's session, and the member's copy
left behind does not disturb the stream when it comes back (issue 14; PROTOCOL.md 13.3,
14.5, 14.7). The lab of roaming_takeover_test (strict NAT before the client, members s,
s2, o, epochs of 3 s, checkpoints every 200 ms, client --resume-after-ms 1000, no
--resume-to); the members also serve --metrics (their connection losses are counted there).

Variants (ROAMING_PARTITION_VARIANTS=partition,stall picks some; both by default), each on
fresh namespaces. A paced 1 MiB/s download runs; 0.4 s into an epoch whose member holds the
session (the active one) that member is cut off:
  partition  an nftables drop rule in the member's own namespace (table inet roampart,
             forward hook, both directions of its lwIP address: the client-facing traffic;
             its control port, kernel TCP to the other members, stays up)
  stall      SIGSTOP (a hung or very slow server, not a dead one)
until the client has resumed the connection elsewhere and at least 2.5 s have passed; then
it comes back (the rule deleted, SIGCONT) while the download still runs.

Checks:
1. the download is SHA-256 exact, across the cut and the comeback; it was still running at
   the comeback;
2. the client asked first a member the schedule names for an epoch between the cut and the
   resume, and rebuilt the connection once, not at the cut-off member (a member that
   refuses with reason 33 is passed over: the cut-off member may have moved the session
   to it over the pool's control ports at a roam during the cut, and the ACM that would
   have told the client is lost); the rebuilding member counts resumes_done 1; the client
   took no other server than the cut-off one for dead;
3. the comeback: the old member still holds its copy and pushes CHECKPOINTs of it, with
   newer generations than the new member's; the client refuses them (checkpoints_not_holder
   rises, PROTOCOL.md 14.3) and sends nothing to the old member's port 7000 but RSTs (its
   follower silences the old flow; counters in the client's namespace, table inet roamlate);
4. the old member ends its copy: its session count falls to 0, and its counters say how:
   connections lost_reset_by_peer, from the client's RST on the old flow (client counter
   stale_copies_reset, PROTOCOL.md 14.5 "The copy left behind"), or roam_sessions_moved, when
   its roam move of the copy reached a member that did not hold the connection first (that
   member parks it unused until it expires). Without the RST the copy lived on: each failed
   roam move of it (refused as a duplicate by the member holding the connection live)
   restarted its dead-peer clock;
5. nothing else took the client away: it took a server for dead exactly once.
No verdict depends on timing: every wait is wait_until with generous bounds.
Exit 0 passed, 1 failed, 77 skipped (not root). About 20 s per variant plain.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import TOPOLOGY, Failure, PacedReader, log, run_tool, wait_until  # noqa: E402
import netns_lab  # noqa: E402
from roaming_takeover_test import PoolLab, client_metrics, first_other, metrics, nat_counters, resumed_target  # noqa: E402
from roaming_test import LWIP, ROLES, epoch_at, status  # noqa: E402

RATE = 1024 * 1024
FILE_S = 16          # seconds of download at RATE
CUT_AT_LEAST_S = 2.5  # beyond --resume-after-ms (1 s)
SERVER_METRICS = "127.0.0.1:9101"  # each member's --metrics, in its own namespace


def nft(lab, role, script):
    out = lab.run_in(role, ["nft", "-f", "-"], input=script, timeout=30)
    if out.returncode != 0:
        raise Failure("nft in %s: %s" % (role, out.stderr.strip()))


def nft_counter(lab, role, table, name):
    out = lab.run_in(role, ["nft", "list", "counter", "inet", table, name], timeout=30)
    if out.returncode != 0:
        raise Failure("nft list counter %s %s: %s" % (table, name, out.stderr.strip()))
    words = out.stdout.split()
    return int(words[words.index("packets") + 1])


def count_late_traffic(lab, victim):
    """Counters in the client's namespace for the victim's files connection: segments from
    it (late_in), RSTs to it (late_rst) and anything else to it (late_out)."""
    nft(lab, "c", """table inet roamlate {
    counter late_in { }
    counter late_rst { }
    counter late_out { }
    chain forward {
        type filter hook forward priority filter - 10; policy accept;
        iifname "c0" ip saddr %s tcp sport 7000 counter name late_in
        oifname "c0" ip daddr %s tcp dport 7000 tcp flags & rst == rst counter name late_rst
        oifname "c0" ip daddr %s tcp dport 7000 tcp flags & rst == 0 counter name late_out
    }
}
""" % (LWIP[victim], LWIP[victim], LWIP[victim]))


class Cut:
    """Cuts a member off and brings it back: a partition or a stall."""

    def __init__(self, lab, kind, victim):
        self.lab, self.kind, self.victim, self.on = lab, kind, victim, False

    def begin(self):
        if self.kind == "partition":
            address = LWIP[self.victim]
            nft(self.lab, self.victim, """table inet roampart {
    counter cut { }
    chain forward {
        type filter hook forward priority filter - 10; policy accept;
        ip saddr %s counter name cut drop
        ip daddr %s counter name cut drop
    }
}
""" % (address, address))
        else:
            self.lab.procs["server_" + self.victim].send_signal(signal.SIGSTOP)
        self.on = True

    def end(self):
        if not self.on:
            return
        self.on = False
        if self.kind == "partition":
            dropped = nft_counter(self.lab, self.victim, "roampart", "cut")
            self.lab.run_in(self.victim, ["nft", "delete", "table", "inet", "roampart"], timeout=30)
            log("# partition of %s healed: its rule dropped %d packets" % (self.victim, dropped))
        else:
            self.lab.procs["server_" + self.victim].send_signal(signal.SIGCONT)
            log("# %s continued (SIGCONT)" % self.victim)


def run_variant(lab, kind):
    pool = PoolLab(lab, RATE * FILE_S, server_args=["--metrics", SERVER_METRICS])
    reader = PacedReader(lab, "one", RATE)
    cut = None
    try:
        e, holder = pool.wait_for_holder(lab, reader)
        victim = ROLES[holder]
        count_late_traffic(lab, victim)
        before = dict(status(lab, victim), **metrics(lab, victim, SERVER_METRICS))
        cut = Cut(lab, kind, victim)
        cut.begin()
        cut_at, cut_epoch = time.monotonic(), e
        log("# %s: cut off %s (member %d, active in epoch %d) at %.1f MiB of %.1f" % (
            kind, victim, holder, e, reader.received() / 1048576.0, pool.size / 1048576.0))

        # The client resumes elsewhere; the cut lasts beyond --resume-after-ms.
        wait_until(lambda: any("resumed at" in x for x in lab.log_text("client").splitlines()), 40,
                   "the client resuming the connection", fail_fast=reader.failed)
        resume_epoch = epoch_at(pool.start, time.time())
        wait_until(lambda: time.monotonic() - cut_at >= CUT_AT_LEAST_S, 10, "the cut's minimum length")
        if reader.done():
            raise Failure("the download ended before the comeback; make FILE_S longer")
        m_back = client_metrics(lab)
        back = {k: nft_counter(lab, "c", "roamlate", k) for k in ("late_in", "late_rst", "late_out")}
        cut.end()
        back_at, back_bytes = time.monotonic(), reader.received()
        log("# %s back %.1f s after the cut, at %.1f MiB" % (victim, back_at - cut_at, back_bytes / 1048576.0))

        # The old member ends its copy.
        def copy_ended():
            time.sleep(0.4)  # a status is a Noise handshake: not 20 a second
            st = status(lab, victim)
            return dict(st, **metrics(lab, victim, SERVER_METRICS)) if st["sessions"] == 0 else None
        after = wait_until(copy_ended, 60, "%s ending its copy of the session" % victim, fail_fast=reader.failed)
        ended_at = time.monotonic()
        m_end = client_metrics(lab)
        late = {k: nft_counter(lab, "c", "roamlate", k) - back[k] for k in back}
        pool.check_download(reader)
    finally:
        reader.kill()
        if cut is not None:
            cut.end()
    log("ok   - the download of %d bytes is SHA-256 exact across the %s and the comeback (still running at "
        "%.1f MiB when %s came back)" % (pool.size, kind, back_bytes / 1048576.0, victim))

    # 2. The resume: asked first where the schedule says; rebuilt once, not at the victim; the
    # client never took the new holder for dead (every silence it logged is the victim's).
    first, _ = resumed_target(lab)
    expected = {LWIP[ROLES[first_other(pool.plan, ep, holder)]] for ep in range(cut_epoch, resume_epoch + 1)}
    if first not in expected:
        raise Failure("the client asked %s first; the schedule names %s" % (first, sorted(expected)))
    text = lab.log_text("client").splitlines()
    rebuilt = [x.split(" resumed at ", 1)[1].split()[0] for x in text if "[checkpoint]" in x and " resumed at " in x]
    silences = [x.split("] ")[-1] for x in text if " silent for " in x]
    m = client_metrics(lab)
    done = m.get("roamstack_checkpoint_resumes_done", 0)
    if done != 1 or len(rebuilt) != 1 or rebuilt[0] == LWIP[victim]:
        raise Failure("the client counts %d resumes, rebuilt at %s (want once, not at %s)" % (
            done, rebuilt, LWIP[victim]))
    if any(not x.startswith("server %s silent" % LWIP[victim]) for x in silences):
        raise Failure("the client took another server than %s for dead: %s" % (LWIP[victim], silences))
    target = [r for r in ROLES if LWIP[r] == rebuilt[0]][0]
    st = status(lab, target)
    if st["resumes_done"] != 1:
        raise Failure("%s: resumes_done %d" % (target, st["resumes_done"]))
    retried = m.get("roamstack_checkpoint_resumes_retried_elsewhere", 0)
    log("ok   - the client resumed once, at %s (%s; asked first %s, retried elsewhere %d), which rebuilt it; it "
        "took only %s for dead" % (target, rebuilt[0], first, retried, victim))

    # 3. The comeback: late pushes refused; the client answered the copy left behind only with RSTs.
    log("# segments of the old connection after the comeback: %s (before it: %s)" % (late, back))
    log("# client checkpoint counters at the comeback %s; when the copy ended %s" % (
        {k.split("checkpoint_")[-1]: v for k, v in m_back.items() if "checkpoint" in k and "resumes" not in k},
        {k.split("checkpoint_")[-1]: v for k, v in m_end.items() if "checkpoint" in k and "resumes" not in k}))

    def rose_client(key):
        key = "roamstack_checkpoint_" + key
        return m_end.get(key, 0) - m_back.get(key, 0)
    refused, resets = rose_client("checkpoints_not_holder"), rose_client("stale_copies_reset")
    log("# the client refused %d late CHECKPOINT pushes of %s (checkpoints_not_holder)" % (refused, victim))
    # A roam may bring the connection back to the victim once its copy is gone: then the
    # client's segments to it are the connection's own.
    back_to_victim = [x for x in lab.log_text("client").splitlines() if "moved to %s:" % LWIP[victim] in x]
    if late["late_out"] != 0 and not back_to_victim:
        raise Failure("the client sent %d segments other than RST to %s's port 7000 after the comeback" % (
            late["late_out"], victim))

    # 4. How the old copy ended.
    def rose(key):
        return after.get(key, 0) - before.get(key, 0)
    how = {k.replace("roamstack_connections_", ""): rose(k) for k in (
        "roamstack_connections_lost_reset_by_peer", "roamstack_connections_lost_retransmission_timeout",
        "roamstack_connections_lost_keepalive_timeout", "roam_sessions_moved", "roam_moves_failed") if rose(k)}
    log("# %s ended its copy %.1f s after the comeback: %s; client stale_copies_reset +%d" % (
        victim, ended_at - back_at, how, resets))
    if how.get("lost_reset_by_peer"):
        # The RST answers a late push: a push was refused, not kept.
        if resets < 1 or late["late_rst"] < 1 or refused < 1:
            raise Failure("%s's copy was reset, but the client counts %d resets, %d refused pushes and %d RSTs "
                          "left c" % (victim, resets, refused, late["late_rst"]))
        log("ok   - the client reset %s's copy (stale_copies_reset +%d, %d RSTs on the old flow; %s: "
            "lost_reset_by_peer +%d)" % (victim, resets, late["late_rst"], victim, how["lost_reset_by_peer"]))
    elif how.get("roam_sessions_moved"):
        log("ok   - %s moved its copy away at a roam before the client's reset reached it (roam_sessions_moved +%d):"
            " the member it went to parks it unused until it expires" % (victim, how["roam_sessions_moved"]))
    else:
        raise Failure("%s holds no session, but neither a reset nor a move counted it: %s" % (victim, how))
    for text in lab.log_text("server_" + victim).splitlines()[-400:]:
        if "roam epoch" in text or "refus" in text or "lost" in text:
            log("#   %s: %s" % (victim, text.split("] ")[-1]))
    for text in lab.log_text("client").splitlines():
        if "[checkpoint]" in text or "handover to" in text:
            log("#   client: " + text.split("] ")[-1])
    lab.stop_cleanly(["client"] + ["server_" + r for r in ROLES])


VARIANTS = ["partition", "stall"]


def main(lab):
    chosen = [n for n in os.environ.get("ROAMING_PARTITION_VARIANTS", "").split(",") if n] or VARIANTS
    unknown = set(chosen) - set(VARIANTS)
    if unknown:
        raise Failure("unknown ROAMING_PARTITION_VARIANTS %s" % ", ".join(sorted(unknown)))
    base = lab.workdir
    failed = []
    fresh = False
    for kind in VARIANTS:
        if kind not in chosen:
            continue
        if fresh:  # new namespaces: empty conntrack, no rules, no processes
            lab.kill_all()
            lab.procs = {}
            run_tool([TOPOLOGY, "up", lab.name, "--origin"], "topology up")
        fresh = True
        lab.workdir = os.path.join(base, kind)  # its own pool, files and logs
        os.makedirs(lab.workdir)
        started = time.monotonic()
        try:
            run_variant(lab, kind)
            log("# %s passed in %.1f s" % (kind, time.monotonic() - started))
        except Failure as e:
            log("not ok - %s (after %.1f s): %s" % (kind, time.monotonic() - started, e))
            failed.append(kind)
    if failed:
        raise Failure("variants failed: %s (logs in %s)" % (", ".join(failed), base))


if __name__ == "__main__":
    netns_lab.run("rp", main, up_args=["--origin"])
