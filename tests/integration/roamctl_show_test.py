#!/usr/bin/env python3
"""`roamctl show` (issue 15, like `wg show`), text and --json, on TwoServers (echo).

A client connection echoes on A (64 KiB each way), moves A->B and echoes 32 KiB more.
Then on B: --json is one JSON object whose server key and pool are B's and the lab pool's,
with the client's channel (key, address), one echo session whose client leg is the
client's 4-tuple with at least the echoed bytes each way (64 + 32 KiB), a last move with
its changeover, and counters (sessions_imported 1). The text form names the same key,
session and 4-tuple. A's show lists no session. A stranger's key is refused.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402


def show(t, name, *extra):
    result = harness.roamctl("show", "--server", t.controls[name], *extra)
    if result.returncode != 0:
        raise TestFailure("roamctl show %s %s: exit %d, stdout %r, stderr %r" % (
            name, " ".join(extra), result.returncode, result.stdout, result.stderr))
    return result.stdout


def main():
    pool = harness.lab_pool()
    with harness.TwoServers(mode="echo") as t:
        sock = t.connect()
        harness.echo_round_trip(sock, 64 * 1024, "before the move")
        t.wait_for_sessions("A", 1)
        t.migrate("A", "B", expect_moved=1)
        harness.echo_round_trip(sock, 32 * 1024, "after the move")

        text = show(t, "B", "--json")
        try:
            value = json.loads(text)
        except ValueError as e:
            raise TestFailure("roamctl show --json is not JSON (%s): %r" % (e, text[:400]))
        check(isinstance(value, dict), "not one JSON object")
        server = value["server"]
        check(server["key"] == pool.server("B")[2], "server key %r is not B's %r" % (server["key"], pool.server("B")[2]))
        check(server["pool"] == pool.pool_public, "pool %r is not the lab pool" % server["pool"])
        check(server["address"] == t.address["B"], "address %r" % server["address"])
        channels = [c for c in value["channels"] if c["address"] == harness.CLIENT_ADDR]
        check(len(channels) >= 1 and channels[0]["key"], "no established channel from the client: %r" %
              value["channels"])
        check(channels[0]["age_ms"] >= 0 and channels[0]["connections"] >= 1,
              "channel without registered connections: %r" % channels[0])
        sessions = value["sessions"]
        check(len(sessions) == 1 and value["sessions_total"] == 1, "B lists %r" % sessions)
        session = sessions[0]
        check(session["kind"] == "echo" and session["movable"] is True, "session %r" % session)
        leg = session["legs"][0]
        check(leg["role"] == "client" and leg["remote_address"] == harness.CLIENT_ADDR and
              leg["local_address"] == t.address["B"] and leg["local_port"] == 7000, "leg %r" % leg)
        want = (64 + 32) * 1024
        check(leg["bytes_in"] >= want and leg["bytes_out"] >= want,
              "bytes in %d / out %d, expected at least %d each way" % (leg["bytes_in"], leg["bytes_out"], want))
        check(leg["bytes_in"] < want + 4096 and leg["bytes_out"] < want + 4096,
              "bytes in %d / out %d, far more than the %d echoed" % (leg["bytes_in"], leg["bytes_out"], want))
        move = session["last_move"]
        check(move is not None and move["changeover_ms"] is not None and move["ago_ms"] >= 0,
              "last move %r" % move)
        check(session["age_ms"] is not None, "no age")
        check(value["counters"]["sessions_imported"] == 1, "counters %r" % value["counters"])
        log("show --json on B: key, pool, channel, echo session %s, %d/%d bytes, changeover %d ms" % (
            session["id"], leg["bytes_in"], leg["bytes_out"], move["changeover_ms"]))

        plain = show(t, "B")
        for needle in ("server: " + pool.server("B")[2], "pool: " + pool.pool_public, "channel: " + channels[0]["key"],
                       "session: %s (echo)" % session["id"], "%s:%d" % (harness.CLIENT_ADDR, leg["remote_port"]),
                       "last move: arrived", "sessions_imported: 1"):
            check(needle in plain, "text show lacks %r:\n%s" % (needle, plain))
        check("session:" not in show(t, "A"), "A still lists a session")

        stranger = harness.roamctl("show", "--server", t.controls["B"], "--key", pool.stranger_operator())
        check(stranger.returncode == 1 and "not authorized" in stranger.stdout, "a stranger got %r %r" % (
            stranger.stdout, stranger.stderr))
        log("show (text) names the same; A lists no session; a stranger is refused")
        sock.close()
        t.wait_for_sessions("B", 0)
        t.stop_all()


if __name__ == "__main__":
    harness.run(main)
