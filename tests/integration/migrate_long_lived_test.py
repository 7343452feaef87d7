#!/usr/bin/env python3
"""Long-lived policy (seed 003 section 3.3): `roam-server --protect-older-than 2` moves only
connections at least 2 s old; younger ones are closed cleanly instead of moved.

Topology: harness.TwoServers (echo), --protect-older-than 2 on both servers. An old
connection is opened and echoes; after 2.5 s a young one is opened and echoes; at once
`roamctl migrate A -> B` must say "ok moved 1 of 2 ... (1 closed young)". The old connection then echoes from B
(B holds 1 session, A none); the young one sees a clean EOF (not a reset), and A counts
sessions_closed_young == 1. The wait only makes a connection old: nothing is timed.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402


def main():
    with harness.TwoServers(mode="echo", server_extra=["--protect-older-than", "2"]) as t:
        old = t.connect()
        harness.echo_round_trip(old)
        time.sleep(2.5)
        young = t.connect()
        harness.echo_round_trip(young)
        moved, total, _, _ = t.migrate("A", "B")
        check((moved, total) == (1, 2), "expected 'moved 1 of 2', got moved %d of %d" % (moved, total))
        note = harness.moved_note(t.last_summary)
        check(note == "1 closed young", "the summary's note is %r, expected '1 closed young'" % note)
        harness.echo_round_trip(old)
        t.wait_for_sessions("A", 0)
        check(t.status("B")["sessions"] == 1, "B should hold the old connection only")
        check(t.status("A")["sessions_closed_young"] == 1, "A did not count the young connection")
        # One of the client's two connections stayed: the ACM names the one that moved.
        check(t.status("A")["acms_global"] == 0, "A announced the partial move in the global form")
        try:
            rest = young.recv(100)
        except ConnectionResetError:
            rest = None
        check(rest == b"", "the young connection was not closed cleanly (got %r)" % (rest,))
        log("old connection moved and echoes from B; young one closed with a clean EOF")
        old.close()
        young.close()


if __name__ == "__main__":
    harness.run(main)
