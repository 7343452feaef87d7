#!/usr/bin/env python3
"""A client on a UDP link whose own (tunnel-inner) address changes at runtime: roam-client
--addr-file FILE takes its address from FILE and, on SIGUSR1, reads it again and moves its
connections to the new address (seed 003, "a client moves"; the netns test
client_move_test covers the TUN device and NATs).

Topology: harness.TwoServers (echo); the client starts as 198.18.11.2 from its file (the
servers route all of 198.18.11.0/24 to its UDP socket).

Checks: an echo through the forward, A holding the client's registration; FILE then says
198.18.11.7 and the client gets SIGUSR1: it logs the change, A answers `rebound` (the ACM
comes on a channel from the new address: nothing between rewrites it), A counts
peer_moves_applied 1 and peer_moves_rebound 1, refuses nothing, and the echo goes on
byte-exact on the same connection. Two more changes in a row (the second before the first
was answered, back to 198.18.11.2): the echo goes on. A file that names no address changes nothing (the
client logs why; the echo goes on). A server move A -> B afterwards still reaches the
client at its new address ("ok moved 1 of 1", echo byte-exact, clean EOF).

Then, with fresh servers: the client's address changes as a server move starts (SIGUSR1
sent as roamctl migrate A -> B is launched; which reaches the client first is up to the
scheduler, roamctl's Noise handshake usually makes the client's change first), and back
as B -> A starts: the echo goes on byte-exact on the final server. And with servers
started with --client-moves off: the client's ACM is refused (peer_moves_disabled) and
the client resets its local connection at once (ECONNRESET, not the dead-peer bound).
"""
import os
import re
import signal
import socket
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402
from register_owner_test import Echo, wait_until  # noqa: E402

NEW_ADDR = "198.18.11.7"


def write_address(path, address):
    with open(path, "w") as f:
        f.write(address + "\n")


def registered_echo(t):
    """A connection through the client's forward, echoing, registered at A."""
    sock = t.connect()
    echo = Echo(sock)
    echo.exchange()
    wait_until("A to register the connection", lambda: t.status("A")["registrations"] >= 1)
    return sock, echo


def move_during_server_move(path):
    """The client's own address changes while its server moves it (A -> B, issue 12):
    SIGUSR1 right as roamctl migrate starts, then again in the other direction right after
    the move. Whatever order the ACM, the handover and the client's own ACM take, the
    connection ends on B at the client's new address, echoing byte-exact."""
    write_address(path, harness.CLIENT_ADDR)
    with harness.TwoServers(mode="echo", client_extra=["--addr-file", path]) as t:
        sock, echo = registered_echo(t)
        write_address(path, NEW_ADDR)
        result = {}
        mover = threading.Thread(target=lambda: result.setdefault("moved", t.migrate_raw("A", "B")))
        mover.start()
        t.client.popen.send_signal(signal.SIGUSR1)
        mover.join()
        line = result["moved"].stdout.strip()
        check(result["moved"].returncode == 0 and harness.parse_moved(line) is not None and
              harness.parse_moved(line)[0] == 1, "roamctl migrate A -> B during the change: %r\n%s" % (
                  line, t.tails()))
        echo.exchange(8)
        check(t.status("B")["sessions"] == 1 and t.status("A")["sessions"] == 0, "the session is not on B alone")
        log("ok   - own address changed to %s as A -> B started (%s): echo byte-exact on B" % (NEW_ADDR, line))
        write_address(path, harness.CLIENT_ADDR)
        t.client.popen.send_signal(signal.SIGUSR1)
        moved = t.migrate("B", "A", expect_moved=1)
        echo.exchange(8)
        sock.shutdown(socket.SHUT_WR)
        check(sock.recv(1) == b"", "the echo did not end with EOF")
        sock.close()
        log("ok   - and back to %s as B -> A started: %s, echo byte-exact (%d bytes), clean EOF" % (
            harness.CLIENT_ADDR, moved, echo.count))


def refused_move(path):
    """Servers that take no client moves (--client-moves off): the client's ACM is refused,
    and the client resets the connection at once (its dead-peer bound is 10 minutes here,
    so a reset can only come from the refusal); the server changes nothing."""
    write_address(path, harness.CLIENT_ADDR)
    with harness.TwoServers(mode="echo", server_extra=["--client-moves", "off"],
                            client_extra=["--addr-file", path, "--dead-peer", "600"]) as t:
        sock, echo = registered_echo(t)
        write_address(path, NEW_ADDR)
        t.client.popen.send_signal(signal.SIGUSR1)
        check(t.client.wait_for_log("refused our move to %s (1 connection(s)); reset 1" % NEW_ADDR),
              "the client did not reset the refused connection:\n" + t.client.tail())
        sock.settimeout(60)  # a hang detector only: the reset is already sent
        try:
            data = sock.recv(4096)
            while data:
                data = sock.recv(4096)
            raise TestFailure("the local connection ended with a clean EOF, not a reset")
        except ConnectionResetError:
            pass
        sock.close()
        a = t.status("A")
        check(a["peer_moves_disabled"] == 1 and a["peer_moves_refused"] == 1 and a["peer_moves_applied"] == 0
              and a["peer_moves_expected"] == 0 and a["peer_moves_rebound"] == 0,
              "A's peer-move counters: %s" % {k: v for k, v in a.items() if "peer_moves" in k})
        check("takes no client moves (--client-moves off)" in t.servers["A"].stderr_text(),
              "A did not log why it refused:\n" + t.servers["A"].tail())
        log("ok   - --client-moves off: A refused the move (peer_moves_disabled 1); the client reset its local "
            "connection at once (ECONNRESET) and logged why")


def main():
    directory = tempfile.mkdtemp(prefix="roam-it-addrfile-")
    path = os.path.join(directory, "address")
    write_address(path, harness.CLIENT_ADDR)
    try:
        with harness.TwoServers(mode="echo", client_extra=["--addr-file", path]) as t:
            sock, echo = registered_echo(t)

            write_address(path, NEW_ADDR)
            t.client.popen.send_signal(signal.SIGUSR1)
            check(t.client.wait_for_log("our address changes from %s to %s" % (harness.CLIENT_ADDR, NEW_ADDR)),
                  "the client did not take its new address:\n" + t.client.tail())
            check(t.client.wait_for_log("points at us directly"), "A did not answer rebound:\n" + t.client.tail())
            echo.exchange(8)
            a = t.status("A")
            moves = {k: v for k, v in a.items() if "peer_moves" in k}
            check(a["peer_moves_applied"] == 1 and a["peer_moves_rebound"] == 1 and a["peer_moves_refused"] == 0,
                  "A's peer-move counters: %s" % moves)
            log("ok   - SIGUSR1 with %s in the file: the connection moved with the client, A answered rebound (%s)"
                % (NEW_ADDR, moves))

            # Straight back, twice in a row without waiting: the second move supersedes the
            # first (its announcement, its held output) and the connection ends up at the
            # client's original address.
            for address in (NEW_ADDR.replace(".7", ".8"), harness.CLIENT_ADDR):
                write_address(path, address)
                t.client.popen.send_signal(signal.SIGUSR1)
                check(t.client.wait_for_log("our address changes from") and
                      t.client.wait_for_log("to %s" % address), "the client did not take %s:\n%s" % (
                          address, t.client.tail()))
            wait_until("A to point the connection back at %s" % harness.CLIENT_ADDR,
                       lambda: t.status("A")["peer_moves_rebound"] >= 2)
            echo.exchange(8)
            a = t.status("A")
            check(a["peer_moves_refused"] == 0, "A refused a move: %s" % {k: v for k, v in a.items() if "peer" in k})
            log("ok   - two more moves in a row (the last back to %s): echo byte-exact, A applied %d" % (
                harness.CLIENT_ADDR, a["peer_moves_applied"]))

            with open(path, "w") as f:
                f.write("not-an-address\n")
            t.client.popen.send_signal(signal.SIGUSR1)
            check(t.client.wait_for_log("the address stays"), "the client did not refuse a bad file:\n" +
                  t.client.tail())
            echo.exchange()
            log("ok   - a file naming no address changes nothing; the echo goes on")

            t.migrate("A", "B", expect_moved=1)
            echo.exchange(8)
            sock.shutdown(socket.SHUT_WR)
            check(sock.recv(1) == b"", "the echo did not end with EOF")
            sock.close()
            log("ok   - then a move A -> B: echo byte-exact (%d bytes, sha256 %s), clean EOF" % (
                echo.count, echo.sent.hexdigest()[:16]))
            t.client.stop()
            text = t.client.stderr_text()
            check(re.search(r"ACMs (\d+) applied 1", text) is not None, "the client did not apply A's ACM")
            moves = re.search(r"own address changes (\d+), our moves announced (\d+) \(applied (\d+) rebound (\d+) "
                              r"refused (\d+) \(connections reset \d+\) abandoned (\d+)\)", text)
            check(moves is not None and moves.group(1) == "3" and int(moves.group(4)) >= 2 and
                  moves.group(5) == "0" and moves.group(6) == "0",
                  "the client's move counters: %s" % (moves.group(0) if moves else None))
            log("ok   - client exit counters: %s" % moves.group(0))
        refused_move(path)
        move_during_server_move(path)
    finally:
        try:
            os.remove(path)
            os.rmdir(directory)
        except OSError:
            pass
    log("PASS")


if __name__ == "__main__":
    harness.run(main)
