#!/usr/bin/env python3
"""The Informer over the control port (seed 004, issue 13; docs/PROTOCOL.md section 12),
no privilege: harness.TwoServers (echo, A and B in the test's pool, a roam-client whose
forward targets A, one live echo connection on A).

1. RATIFY frames to B from peers that may not send them, and bad ones from a member,
   written with the independent control-port client (control_port.py, dissononce):
   the operator's key without a certificate -> "error not authorized"; from a member:
   truncated -> "error malformed ratify: truncated", hold 0 -> "bad field", stale,
   from the future, an unusable address (127.0.0.1) -> "error ratify refused: ...";
   B counts them (ratifies_refused) and stays out of whitelist mode.
2. A valid RATIFY from the member -> "ok ratified 1", B in whitelist mode
   (whitelist_active 1, whitelist_size 1); the same frame again -> "replayed".
3. roamctl inform --server A --to B: "ok informed 1 client address(es) (1 notified) of
   B; moved 1 of 1 sessions"; the live connection echoes from B; the client logged the
   transfer notification and re-pointed its forward; A is in whitelist mode with the
   client's address; a new connection through the forward reaches B.
4. roamctl inform with a stranger's key -> "error not authorized"; a second inform from A
   with nothing left to move still answers ok.
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402
from control_port import SecureControl, frame, read_reply  # noqa: E402

TYPE_REPLY = 4
TYPE_RATIFY = 7
WAIT = 30.0


def ratify(sequence, addresses, issued_at_ms=None, hold_s=60):
    """PROTOCOL.md 12.2, written from the text."""
    issued = int(time.time() * 1000) if issued_at_ms is None else issued_at_ms
    out = struct.pack("!BQQIH", 1, sequence, issued, hold_s, len(addresses))
    for address in addresses:
        out += bytes([4]) + bytes(int(part) for part in address.split("."))
    return out


def ask(control, key, cert, payload):
    with SecureControl(control, key, cert, timeout=WAIT) as sock:
        sock.sendall(frame(TYPE_RATIFY, payload))
        reply = read_reply(sock)
    check(reply is not None and reply[0] == TYPE_REPLY, "no reply frame to a ratify: %r" % (reply,))
    return reply[1]


def main():
    pool = harness.lab_pool()
    with harness.TwoServers(mode="echo") as t:
        live = t.connect()
        harness.echo_round_trip(live, what="the live connection on A")
        a, b = t.controls["A"], t.controls["B"]
        member_key, member_cert, _ = pool.server("F")
        sequence = int(time.time() * 1000) << 10

        log("1. RATIFY from a key that is no pool member, and bad ones from a member")
        reply = ask(b, pool.operator_key, None, ratify(sequence, ["198.18.1.2"]))
        check(reply.startswith("error not authorized"), "the operator's ratify: %r" % reply)
        cases = [
            ("truncated", ratify(sequence, ["198.18.1.2"])[:-1], "error malformed ratify: truncated"),
            ("hold 0", ratify(sequence, ["198.18.1.2"], hold_s=0), "error malformed ratify: bad field"),
            ("stale", ratify(sequence, ["198.18.1.2"], issued_at_ms=int(time.time() * 1000) - 120_000),
             "error ratify refused: stale"),
            ("future", ratify(sequence, ["198.18.1.2"], issued_at_ms=int(time.time() * 1000) + 120_000),
             "error ratify refused: issued in the future"),
            ("loopback", ratify(sequence, ["127.0.0.1"]), "error ratify refused: names an unusable address"),
        ]
        for what, payload, want in cases:
            reply = ask(b, member_key, member_cert, payload)
            check(reply == want, "%s: answered %r, expected %r" % (what, reply, want))
            log("    %s: %s" % (what, reply))
        status_b = t.status("B")
        check(status_b["ratifies_refused"] == len(cases) and status_b["whitelist_active"] == 0,
              "B after the bad ratifies: refused %d, whitelist_active %d" % (
                  status_b["ratifies_refused"], status_b["whitelist_active"]))

        log("2. a valid RATIFY, then the same again")
        good = ratify(sequence, ["198.18.1.2"])
        reply = ask(b, member_key, member_cert, good)
        check(reply == "ok ratified 1", "the valid ratify: %r" % reply)
        reply = ask(b, member_key, member_cert, good)
        check(reply == "error ratify refused: replayed (an old sequence number)", "the replay: %r" % reply)
        status_b = t.status("B")
        check(status_b["ratifies_accepted"] == 1 and status_b["whitelist_active"] == 1 and
              status_b["whitelist_size"] == 1, "B after the ratify: %r" % {
                  k: v for k, v in status_b.items() if k.startswith(("ratif", "whitelist"))})
        log("    ok ratified 1; replay refused; B in whitelist mode")

        log("3. roamctl inform --server A --to B")
        result = harness.roamctl("inform", "--server", a, "--to", b)
        line = result.stdout.strip()
        check(result.returncode == 0 and line.startswith("ok informed 1 client address(es) (1 notified) of " + b) and
              line.endswith("moved 1 of 1 sessions"), "inform: exit %d %r %r\n%s" % (
                  result.returncode, line, result.stderr, t.tails()))
        log("    " + line)
        harness.echo_round_trip(live, what="the live connection, moved to B")
        check(t.client.wait_for_log("transfers its clients to"), "the client never logged the notification")
        check(t.client.wait_for_log("new connections go to"), "the client did not re-point its forward")
        status_a = t.status("A")
        check(status_a["whitelist_active"] == 1 and status_a["whitelist_size"] == 1 and
              status_a["transfers_sent"] == 1 and status_a["informs_done"] == 1,
              "A after informing: %r" % {k: v for k, v in status_a.items()
                                          if k.startswith(("whitelist", "inform", "transfers"))})
        t.wait_for_sessions("A", 0)
        fresh = t.connect()
        harness.echo_round_trip(fresh, what="a new connection after the inform")
        t.wait_for_sessions("B", 2)
        fresh.close()
        log("    moved and echoing from B; a new connection went to B; A whitelists the client")

        log("4. inform with a stranger's key; a second inform")
        result = harness.roamctl("inform", "--server", a, "--to", b, "--key", pool.stranger_operator())
        check(result.returncode == 1 and result.stdout.startswith("error not authorized"),
              "a stranger's inform: exit %d %r" % (result.returncode, result.stdout))
        result = harness.roamctl("inform", "--server", a, "--to", b)
        check(result.returncode == 0 and "moved 0 of 0 sessions" in result.stdout,
              "the second inform: exit %d %r" % (result.returncode, result.stdout))
        log("    %s" % result.stdout.strip())
        live.close()
        t.stop_all()
    log("PASS inform_test.py")


if __name__ == "__main__":
    harness.run(main)
