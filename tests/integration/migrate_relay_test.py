#!/usr/bin/env python3
"""Sessions that cannot move are visible (issue 12): a `relay --backend` session never
moves (its backend is a kernel socket of its host), and status and migrate say so.

Topology: harness.TwoServers in relay mode, both servers relaying to one kernel echo
backend (a Python thread on 127.0.0.1). Asserted:
  1. One relay session echoes. A's `roamctl status` counts it (sessions 1,
     sessions_unmovable 1, sessions_movable 0) and lists it under "unmovable" with kind
     relay, its 4-tuple (198.18.12.2:7000 <-> the client 198.18.11.2) and the reason.
  2. `roamctl migrate A -> B` answers exactly "ok moved 0 of 1 sessions to 198.18.13.2 in
     T ms (1 stayed: 1 relay)": B named by its carrier address, as when sessions move. A
     logs the session with its reason; the session still echoes from A; B holds nothing.
  3. With 102 relay sessions, status lists 100 of them and counts all 102; migrate answers
     "ok moved 0 of 102 ... (102 stayed: 102 relay)", and A logs 20 of them one by one,
     then one line for the rest. Every session still echoes.
"""
import json
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

REASON = "its backend is a kernel socket on this host (run it behind `proxy` mode to move it)"
MANY = 102
LISTED = 100      # MigrationService::max_unmovable_listed
LOGGED = 20       # Exporter::max_stayed_logged


class EchoBackend(harness.KernelBackend):
    """Kernel TCP echo server: sends back what it reads, closes at EOF."""

    def serve(self, conn):
        with conn:
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        return
                    conn.sendall(data)
            except OSError:
                return


def migrate_summary(t, want_total):
    """roamctl migrate A -> B; checks the whole line and returns its parenthesized note."""
    result = t.migrate_raw("A", "B")
    line = result.stdout.strip()
    log("    roamctl: %s" % line)
    moved = harness.parse_moved(line)
    if result.returncode != 0 or moved is None or result.stderr != "":
        raise TestFailure("roamctl migrate: exit %d, stdout %r, stderr %r\n%s" % (
            result.returncode, result.stdout, result.stderr, t.tails()))
    check(moved[:2] == (0, want_total), "expected 'moved 0 of %d', got %r" % (want_total, line))
    check(moved[2] == t.address["B"], "the summary names B as %s, not by its carrier address %s (%r)" % (
        moved[2], t.address["B"], line))
    return harness.moved_note(line)


def main():
    backend = EchoBackend()
    try:
        with harness.TwoServers(mode="relay", mode_args=["--backend", "127.0.0.1:%d" % backend.port]) as t:
            log("1. one relay session: status lists it with its reason")
            first = t.connect()
            harness.echo_round_trip(first)
            status = t.status("A")
            check((status["sessions"], status["sessions_unmovable"], status["sessions_movable"]) == (1, 1, 0),
                  "A's counts: sessions %d, unmovable %d, movable %d (expected 1, 1, 0)" % (
                      status["sessions"], status["sessions_unmovable"], status["sessions_movable"]))
            listed = status["unmovable"]
            check(len(listed) == 1, "A lists %d unmovable sessions, expected 1: %r" % (len(listed), listed))
            entry = listed[0]
            log("    unmovable: %s" % json.dumps(entry))
            check(entry["kind"] == "relay" and entry["label"] == "relay" and entry["reason"] == REASON,
                  "unexpected entry %r" % entry)
            check((entry["local_address"], entry["local_port"]) == (t.address["A"], 7000)
                  and entry["remote_address"] == harness.CLIENT_ADDR and 0 < entry["remote_port"] < 65536,
                  "unexpected 4-tuple in %r" % entry)
            check(t.status("B")["unmovable"] == [], "B lists sessions it does not hold")

            log("2. migrate leaves it here, counts it and names B by its carrier address")
            note = migrate_summary(t, 1)
            check(note == "1 stayed: 1 relay", "summary note %r, expected '1 stayed: 1 relay'" % note)
            check(t.servers["A"].wait_for_log("(relay): stays here: " + REASON),
                  "A did not log why the relay session stayed\n" + t.servers["A"].tail())
            harness.echo_round_trip(first, what="echo after the move that left it here")
            check(t.status("A")["sessions"] == 1 and t.status("B")["sessions"] == 0, "the relay session left A")

            log("3. %d relay sessions: status lists %d, migrate counts all, the log is bounded" % (MANY, LISTED))
            sockets = [first] + [t.connect() for _ in range(MANY - 1)]
            for sock in sockets:
                harness.echo_round_trip(sock, message=64)
            status = t.status("A")
            check((status["sessions"], status["sessions_unmovable"], len(status["unmovable"])) == (MANY, MANY, LISTED),
                  "A: sessions %d, unmovable %d, listed %d (expected %d, %d, %d)" % (
                      status["sessions"], status["sessions_unmovable"], len(status["unmovable"]), MANY, MANY,
                      LISTED))
            note = migrate_summary(t, MANY)
            want = "%d stayed: %d relay" % (MANY, MANY)
            check(note == want, "summary note %r, expected %r" % (note, want))
            check(t.servers["A"].wait_for_log("more sessions stay here"), "A did not say it stopped logging")
            # One line per session from the two moves: 1, then LOGGED of the MANY.
            lines = t.servers["A"].stderr_text().count("(relay): stays here: ")
            check(lines == 1 + LOGGED, "A logged %d stayed sessions one by one, expected %d" % (lines, 1 + LOGGED))
            for sock in sockets:
                harness.echo_round_trip(sock, message=64, what="echo after the second move")
            for sock in sockets:
                sock.shutdown(socket.SHUT_WR)
                check(sock.recv(1) == b"", "no clean EOF from the backend through the relay")
                sock.close()
            t.wait_for_sessions("A", 0)
            log("relay sessions listed, counted and still working; B named by its carrier address")
    finally:
        backend.close()


if __name__ == "__main__":
    harness.run(main)
