#!/usr/bin/env python3
"""roam-server --roam-pool (seed 002, PROTOCOL.md 13): two members A and B of one pool.

The schedule is computed here, independently, from PROTOCOL.md 13.1-13.3 (hashlib
BLAKE2b): epoch 1 starts a second ago and lasts 600 s (m = 0), so within the test the
active member is servers[S_1]. The member order in the pool file is chosen from that so
that, in the first run, B is active and A (the client's -L target) is standby; in the
second run the order is swapped.

1. Both members report in `roamctl status` (roam_epoch, roam_active, ...) epoch 1 and active = (their
   index == S_1): the C++ schedule agrees with this one.
2. Standby A drops the new connection of a client that does not follow the pool
   (--no-follow: no channel, no schedule, it dials A as configured): roam.dropped_standby
   (roam_dropped_standby) rises; nothing echoes. A client that follows learns the
   schedule over its channel to A (the channel port is open on a standby member,
   PROTOCOL.md 13.6) and its -L connection to A goes to the active B: it echoes, and A
   drops nothing.
3. Active A serves: an echo round trip works; roam.dropped_standby stays 0.
4. With A active, the client's channel to A got a ROAM_UPDATE: the client logs the schedule with the
   same active server and t = n (roam_updates_sent on A).
5. Catching up (PROTOCOL.md 13.4): 1 s epochs, grant-epochs 2, update-seconds 60. The
   members send updates at least every grant / 2 anyway, so the client's key never runs
   out: after 4 more epochs its schedule still covers the members' epoch and it extended
   its key at least twice.
6. Told why not: a pool whose chain ended (length 2, started 100 s ago) gives no update;
   a new channel gets ERROR 3 "roam pool: chain exhausted" (roam_updates_unavailable on
   the member), which the client logs and counts instead of waiting.
Nothing is timed: every wait is a poll with harness bounds. Runs in a few seconds.
"""
import base64
import hashlib
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

EPOCH_S = 600
LENGTH = 64


def blake(label, key):
    return hashlib.blake2b(label + key, digest_size=32).digest()


def server_index(key, servers):
    v = int.from_bytes(blake(b"roamstack roam server v1", key)[:8], "big")
    return (v * servers) >> 64


def chain_key(seed, n, i):
    k = seed
    for _ in range(n - i):
        k = blake(b"roamstack chain v1", k)
    return k


def roam_group(t, name):
    """The roam_* counters of NAME's status, without the prefix."""
    status = t.status(name)
    group = {k[len("roam_"):]: v for k, v in status.items() if k.startswith("roam_")}
    if "epoch" not in group:
        raise TestFailure("status of %s has no roam_ counters: %r" % (name, sorted(status)))
    return group


def write_pool(directory, seed, members, start, length=LENGTH, extra=""):
    seed_path = os.path.join(directory, "pool.chain")
    if not os.path.exists(seed_path):
        fd = os.open(seed_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (base64.b64encode(seed).decode() + "\n").encode())
        os.close(fd)
    path = os.path.join(directory, "pool-%s-%d.conf" % ("".join(members), length))
    with open(path, "w") as f:
        f.write("# written by roam_pool_test\nseed pool.chain\nlength %d\nstart %d\nm 0\n%s" % (length, start, extra))
        f.write("delta-ms 100\ngamma-ms 200\n")
        for name in members:
            f.write("member %s:7000\n" % harness.TwoServers.address[name])
    return path


def run(directory, seed, active_name, start, follow=True):
    s1 = server_index(chain_key(seed, LENGTH, 1), 2)
    standby_name = "B" if active_name == "A" else "A"
    members = [None, None]
    members[s1] = active_name
    members[1 - s1] = standby_name
    pool = write_pool(directory, seed, members, start)
    client_extra = [] if follow else ["--no-follow"]
    with harness.TwoServers(mode="echo", server_extra=["--roam-pool", pool, "--roam-epoch", str(EPOCH_S)],
                            client_extra=client_extra) as t:
        for name in ("A", "B"):
            group = roam_group(t, name)
            check(group["epoch"] == 1, "%s is in epoch %r, expected 1" % (name, group["epoch"]))
            want = 1 if name == active_name else 0
            check(group["active"] == want and group["accepting"] == want,
                  "%s: active %r accepting %r, expected %d (S_1 = %d, members %r)" % (
                      name, group["active"], group["accepting"], want, s1, members))
            check(group["member"] == members.index(name), "%s: member %r" % (name, group["member"]))
        if active_name == "A":
            sock = t.connect()
            harness.echo_round_trip(sock, 16 * 1024, "through the active member")
            sock.close()
            check(roam_group(t, "A")["dropped_standby"] == 0, "the active member dropped SYNs")
            log("active A served an echo; B standby")
            # The client's channel to A brought it a ROAM_UPDATE with the pool: its
            # schedule names the same active server. (A standby A drops the channel's SYN
            # too: the client hears nothing from it.)
            a = harness.TwoServers.address["A"]
            want = "roam schedule from %s: epoch 1 " % a
            if not t.client.wait_for_log(want):
                raise TestFailure("the client logged no %r\n%s" % (want, t.tails()))
            line = [x for x in t.client.stderr_text().splitlines() if want in x][0]
            active_address = harness.TwoServers.address[active_name]
            check("active server %s:7000, schedule known until epoch %d" % (active_address, LENGTH) in line,
                  "client: %r, expected active server %s and t = %d (grant 3600 capped at n)" % (
                      line, active_address, LENGTH))
            check(t.status("A")["roam_updates_sent"] >= 1, "A sent no ROAM_UPDATE")
        elif follow:
            # The channel to standby A brings the schedule; the connection goes to B.
            a = harness.TwoServers.address["A"]
            if not t.client.wait_for_log("roam schedule from %s" % a):
                raise TestFailure("the client learned no schedule from standby A\n" + t.tails())
            sock = t.connect()
            harness.echo_round_trip(sock, 16 * 1024, "redirected to the active member")
            check(t.status("B")["sessions"] == 1, "active B does not hold the connection")
            sock.close()
            check(roam_group(t, "A")["dropped_standby"] == 0, "standby A dropped a SYN of a following client")
            log("a following client's connection to standby A went to active B")
        else:
            before = roam_group(t, "A")["dropped_standby"]
            sock = t.connect()
            sock.settimeout(0.2)
            try:
                sock.sendall(b"hello")
            except OSError:
                pass
            deadline = time.monotonic() + harness.READY_TIMEOUT
            while roam_group(t, "A")["dropped_standby"] <= before:
                if time.monotonic() > deadline:
                    raise TestFailure("standby A never dropped the carrier SYN\n" + t.tails())
                time.sleep(0.05)
            try:
                data = sock.recv(16)
            except socket.timeout:
                data = None
            check(not data, "standby A echoed %r" % data)
            sock.close()
            log("standby A dropped the client's SYN (dropped_standby %d)" % roam_group(t, "A")["dropped_standby"])


def catch_up(directory, seed):
    """5: a client on a channel never runs out of schedule; 6: a pool with none says why."""
    metrics = "127.0.0.1:%d" % harness.free_tcp_port()
    pool = write_pool(directory, seed, ["A", "B"], int(time.time()) - 1, 1000,
                      "grant-epochs 2\nupdate-seconds 60\n")
    with harness.TwoServers(mode="echo", server_extra=["--roam-pool", pool, "--roam-epoch", "1"],
                            client_extra=["--metrics", metrics]) as t:
        granted = lambda: harness.metric_value(metrics, "roamstack_roam_roam_granted_until") or 0  # noqa: E731
        harness.wait_until("a first schedule at the client", lambda: granted() >= 1)
        first = roam_group(t, "A")["epoch"]
        harness.wait_until("4 more epochs", lambda: roam_group(t, "A")["epoch"] >= first + 4)
        epoch = roam_group(t, "A")["epoch"]
        extended = harness.metric_value(metrics, "roamstack_roam_roam_keys_extended")
        check(granted() >= epoch, "the client's key reaches epoch %d, the members are in %d" % (granted(), epoch))
        check(extended >= 2, "the client extended its key %s times in 4 epochs" % extended)
        log("5: a client on a channel kept up over 4 one-second epochs (key to epoch %d in epoch %d, %d extensions)"
            % (granted(), epoch, extended))
    pool = write_pool(directory, seed, ["A", "B"], int(time.time()) - 100, 2, "")
    metrics = "127.0.0.1:%d" % harness.free_tcp_port()
    with harness.TwoServers(mode="echo", server_extra=["--roam-pool", pool, "--roam-epoch", "1"],
                            client_extra=["--metrics", metrics]) as t:
        want = "has no schedule to give: roam pool: chain exhausted"
        check(t.client.wait_for_log(want), "the client logged no %r\n%s" % (want, t.tails()))
        check(t.status("A")["roam_updates_unavailable"] >= 1, "A counted no ERROR 3")
        check(harness.metric_value(metrics, "roamstack_roam_roam_updates_unavailable") >= 1, "the client counted no ERROR 3")
        log("6: an exhausted pool's member told the client why it has no schedule (ERROR 3)")


def main():
    seed = os.urandom(32)
    start = int(time.time()) - 1
    with tempfile.TemporaryDirectory(prefix="roam_pool_") as directory:
        run(directory, seed, "B", start, follow=False)
        run(directory, seed, "B", start)
        run(directory, seed, "A", start)
        catch_up(directory, seed)
    log("roam_pool: ok")


if __name__ == "__main__":
    harness.run(main)
