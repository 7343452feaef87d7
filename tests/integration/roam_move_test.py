#!/usr/bin/env python3
"""A roam moves the sessions (PROTOCOL.md 13.6), and a failed roam move leaves them where
they were, counted, and is tried again. Two members A and B on loopback (UDP links), epochs
of 2 s; the schedule is computed here from PROTOCOL.md 13.1-13.3 (hashlib) and the test
waits for an epoch where A is active and B is next.

1. Pool file with both control ports: an echo connection opened while A is active is, after
   the boundary, held by B (B's sessions 1, A's roam_sessions_moved 1) and echoes on.
2. Pool file where B's control port is a closed one: A's move fails (roam_moves_failed or
   roam_moves_not_started counts it), A still holds the session, it echoes on (the
   established flow is not dropped), and A tries again within the epoch
   (roam_moves_started + roam_moves_not_started reaches 2).
Nothing is timed: waits are polls with bounds. About 10-30 s (it waits for the schedule).
"""
import base64
import hashlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

EPOCH_S = 2
LENGTH = 256


def blake(label, key):
    return hashlib.blake2b(label + key, digest_size=32).digest()


def active_members(seed):
    """S_i for i = 1..LENGTH with N = 2 (index 0: A, 1: B)."""
    keys = [seed]
    for _ in range(LENGTH):
        keys.append(blake(b"roamstack chain v1", keys[-1]))
    keys.reverse()
    return [(int.from_bytes(blake(b"roamstack roam server v1", keys[i])[:8], "big") * 2) >> 64
            for i in range(1, LENGTH + 1)]


def run(directory, broken):
    seed = os.urandom(32)
    start = int(time.time()) - 1
    members = active_members(seed)
    seed_path = os.path.join(directory, "chain-%d" % broken)
    fd = os.open(seed_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, (base64.b64encode(seed).decode() + "\n").encode())
    os.close(fd)
    pool = os.path.join(directory, "pool-%d.conf" % broken)
    t = None

    def write_pool(name, argv):
        if name == "A":
            b_control = "127.0.0.1:1" if broken else t.controls["B"]
            with open(pool, "w") as f:
                f.write("seed %s\nlength %d\nstart %d\nm 0\nupdate-seconds 1\n" % (seed_path, LENGTH, start))
                f.write("member %s:7000 control %s\n" % (harness.TwoServers.address["A"], t.controls["A"]))
                f.write("member %s:7000 control %s\n" % (harness.TwoServers.address["B"], b_control))
        return argv

    t = harness.TwoServers(mode="echo", server_extra=["--roam-pool", pool, "--roam-epoch", str(EPOCH_S)],
                           probe=False, argv_hook=write_pool)
    with t:
        # An epoch e (from 2 on, far enough ahead) with A active and B next; open the
        # connection 0.4 s into it (the last member's transitional interval is over).
        now = time.time()
        e = int((now - start) // EPOCH_S) + 3
        while not (members[e - 1] == 0 and members[e] == 1):
            e += 1
        begins = start + (e - 1) * EPOCH_S
        time.sleep(max(0.0, begins + 0.4 - time.time()))
        sock = t.connect()
        harness.echo_round_trip(sock, 4096, "while A is active")
        check(t.status("A")["sessions"] == 1, "A does not hold the connection in its active epoch")
        # Past the boundary (and the retry's second): the move ran, or failed and ran again.
        boundary = begins + EPOCH_S
        while time.time() < boundary + 1.6:
            harness.echo_round_trip(sock, 1024, "across the roam")
            time.sleep(0.1)
        a, b = t.status("A"), t.status("B")
        if broken:
            failures = a["roam_moves_failed"] + a["roam_moves_not_started"]
            check(failures >= 1, "A counted no failed roam move: %r" % {k: v for k, v in a.items() if "roam" in k})
            check(a["roam_moves_started"] + a["roam_moves_not_started"] >= 2, "A did not try again: %r" % (
                {k: v for k, v in a.items() if "roam_moves" in k}))
            check(a["sessions"] == 1 and a["roam_sessions_moved"] == 0, "the session left A: %r" % a["sessions"])
            log("B's control port closed: the move failed (roam_moves_failed %d, not_started %d), tried %d times; "
                "the session stayed on A and echoed on" % (a["roam_moves_failed"], a["roam_moves_not_started"],
                                                           a["roam_moves_started"] + a["roam_moves_not_started"]))
        else:
            check(a["roam_sessions_moved"] == 1 and a["roam_moves_failed"] == 0, "A moved %r (failed %r)" % (
                a["roam_sessions_moved"], a["roam_moves_failed"]))
            check(b["sessions"] == 1, "B does not hold the session after the roam: %r" % b["sessions"])
            log("epoch %d -> %d: A handed the session to B (roam_sessions_moved 1); it echoed on" % (e, e + 1))
        harness.echo_round_trip(sock, 4096, "after the roam")
        sock.close()


def main():
    with tempfile.TemporaryDirectory(prefix="roam_move_") as directory:
        run(directory, broken=False)
        run(directory, broken=True)
    log("roam_move: ok")


if __name__ == "__main__":
    harness.run(main)
