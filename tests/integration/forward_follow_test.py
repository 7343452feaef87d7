#!/usr/bin/env python3
"""New connections follow a server that moved (issue 12): after `roamctl migrate A->B`
took every connection the client had at A, the client's -L forward dials B.

Topology: harness.TwoServers (echo), the client's forward targets A.
1. One connection, one echo; migrate A->B ("ok moved 1 of 1"); the client logs that the
   forward now goes to B.
2. A NEW local connection echoes; B's status holds both sessions, A's none.
3. A is killed (SIGKILL): both connections still echo (neither ever needs A again), and
   a third new connection works too.
4. B->A is not possible any more (A is gone); the client stops cleanly.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402


def main():
    with harness.TwoServers(mode="echo") as t:
        first = t.connect()
        harness.echo_round_trip(first, 2048, "first connection, on A")
        t.wait_for_sessions("A", 1)
        t.migrate("A", "B", expect_moved=1)
        needle = "new connections go to %s:7000" % t.address["B"]
        if not t.client.wait_for_log(needle):
            raise TestFailure("the client never re-pointed its forward (%r)\n%s" % (needle, t.tails()))
        harness.echo_round_trip(first, 2048, "first connection, after the move")

        second = t.connect()
        harness.echo_round_trip(second, 2048, "new connection after the move")
        t.wait_for_sessions("B", 2)
        status_a = t.status("A")
        check(status_a["sessions"] == 0, "A holds %d sessions; the new connection went there" % status_a["sessions"])
        log("after the move: B holds 2 sessions, A none")

        t.servers["A"].stop(signal.SIGKILL, check_exit=False)
        del t.servers["A"]  # killed on purpose: not checked for a clean exit
        log("A killed with SIGKILL")
        harness.echo_round_trip(first, 4096, "first connection with A dead")
        harness.echo_round_trip(second, 4096, "second connection with A dead")
        third = t.connect()
        harness.echo_round_trip(third, 4096, "a third connection with A dead")
        t.wait_for_sessions("B", 3)
        for sock in (first, second, third):
            sock.close()
        t.wait_for_sessions("B", 0)
        t.stop_all()


if __name__ == "__main__":
    harness.run(main)
