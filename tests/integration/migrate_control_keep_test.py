#!/usr/bin/env python3
"""Moves reuse the control connection kept from an earlier move (PROTOCOL.md 4.6), and a
kept connection that went stale costs no move.

Topology (harness.TwoServers, echo): servers A and B, one client forward to A.

Part 1, reuse: one echo connection moves A->B, B->A, A->B, B->A in the same processes;
between moves 64 KiB of seeded bytes go through the echo and come back byte-exact. Moves 1
and 2 open a control connection (A to B, B to A), moves 3 and 4 reuse it: asserted with
each server's control_connections_opened == 1 and control_connections_reused == 1.

Part 2, stale: on a fresh lab, a move A->B with no session yet leaves A a kept connection
to B; B is killed (SIGKILL) and started again on the same ports; an echo connection opened
to A then moves A->B: it succeeds ("ok moved 1 of 1") and echoes byte-exact from B, and A
counts control_connections_stale == 1 (the kept connection was found dead, either while
it idled or on the move's first write, which then retried on a new connection).
Part 3, stale on first use: A reaches B's control port through a TCP forwarder in this
script. After a first move A->B (no session) A keeps the forwarded connection; the
forwarder is then told to close that connection as soon as A writes to it (a kept
connection that looks alive until used). An echo connection then moves A->B: the move's
address_request meets the close, A counts it stale and moves on a new connection (which
the forwarder passes): "ok moved 1 of 1", byte-exact, control_connections_stale == 1,
control_connections_reused == 1, control_connections_opened == 2.
Part 4, silent: the same, but the forwarder swallows what A writes on the kept
connection without closing it (a target host that vanished): A gives the move's first
answer 2 s (PROTOCOL.md 4.6), then counts it stale and moves on a new connection: the
same assertions.
Nothing is timed.
"""
import os
import random
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import RoamProcess, TestFailure, check, log  # noqa: E402

CHUNK = 64 * 1024


def counters(t, name):
    status = t.status(name)
    return {k: status.get(k) for k in ("control_connections_opened", "control_connections_reused",
                                       "control_connections_stale", "control_connections_cached")}


def part_reuse():
    rng = random.Random(0xC0417)
    with harness.TwoServers(mode="echo") as t:
        sock = t.connect()
        harness.echo_round_trip(sock, rng.randbytes(CHUNK), "before the moves")
        for index, (source, target) in enumerate([("A", "B"), ("B", "A"), ("A", "B"), ("B", "A")]):
            moved = t.migrate(source, target, expect_moved=1)
            log("move %d %s->%s: %.3f ms (roamctl)" % (index + 1, source, target, moved[3]))
            harness.echo_round_trip(sock, rng.randbytes(CHUNK), "after move %d" % (index + 1))
        seen = {name: counters(t, name) for name in ("A", "B")}
        log("counters: %s" % seen)
        for name in ("A", "B"):
            check(seen[name]["control_connections_opened"] == 1,
                  "%s opened %s control connections to its target, expected 1" % (
                      name, seen[name]["control_connections_opened"]))
            check(seen[name]["control_connections_reused"] == 1,
                  "%s reused a kept control connection %s times, expected 1" % (
                      name, seen[name]["control_connections_reused"]))
            check(seen[name]["control_connections_stale"] == 0, "%s counted a stale connection" % name)
        sock.close()
        t.stop_all()


def part_stale():
    rng = random.Random(0x57A1E)
    with harness.TwoServers(mode="echo") as t:
        t.migrate("A", "B", expect_moved=0)  # nothing to move: only leaves A a kept connection
        check(counters(t, "A")["control_connections_cached"] == 1, "A kept no control connection to B")
        old = t.servers["B"]
        old.stop(sig=harness.signal.SIGKILL, check_exit=False)
        t.servers["B"] = RoamProcess("server", old.argv, name=old.name + "-restarted")
        if not t.servers["B"].wait_for_log("[app] serving "):
            raise TestFailure("B did not start again\n%s" % t.servers["B"].tail())
        sock = t.connect()
        harness.echo_round_trip(sock, rng.randbytes(CHUNK), "on A")
        moved = t.migrate("A", "B", expect_moved=1)
        log("move after B's restart: %.3f ms (roamctl)" % moved[3])
        harness.echo_round_trip(sock, rng.randbytes(CHUNK), "on B after the move")
        seen = counters(t, "A")
        log("A counters: %s" % seen)
        check(seen["control_connections_stale"] == 1,
              "A counted %s stale control connections, expected 1" % seen["control_connections_stale"])
        check(seen["control_connections_opened"] == 2,
              "A opened %s control connections, expected 2 (before and after B's restart)" %
              seen["control_connections_opened"])
        check(t.status("B")["sessions_imported"] == 1, "the restarted B imported no session")
        sock.close()
        t.stop_all()


class Forwarder(harness.KernelBackend):
    """127.0.0.1:port -> target. poison(): connections open now are closed (both ways) at
    the first byte their client writes; later ones pass. silence(): what their clients
    write from now on is swallowed."""

    def __init__(self, target_port):
        self.target_port = target_port
        self.pairs = []
        self.poisoned = set()
        self.silenced = set()
        super().__init__(backlog=8)  # starts accepting: the fields above first

    def serve(self, client):
        server = socket.create_connection(("127.0.0.1", self.target_port))
        with self.lock:
            self.pairs.append((client, server))
        threading.Thread(target=self.pump, args=(server, client, False), daemon=True).start()
        self.pump(client, server, True)

    def pump(self, source, sink, from_client):
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            with self.lock:
                poisoned = from_client and id(source) in self.poisoned
                silenced = from_client and id(source) in self.silenced
            if silenced and data:
                continue
            if not data or poisoned:
                for s in (source, sink):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return
            try:
                sink.sendall(data)
            except OSError:
                return

    def poison(self):
        with self.lock:
            self.poisoned.update(id(client) for client, _ in self.pairs)
            return len(self.pairs)

    def silence(self):
        with self.lock:
            self.silenced.update(id(client) for client, _ in self.pairs)
            return len(self.pairs)

    def close(self):
        super().close()
        with self.lock:
            for pair in self.pairs:
                for s in pair:
                    s.close()


def part_stale_on_use(silent=False):
    rng = random.Random(0x0F1257)
    with harness.TwoServers(mode="echo") as t:
        forwarder = Forwarder(int(t.controls["B"].split(":")[1]))
        try:
            via = "127.0.0.1:%d" % forwarder.port
            t.controls["B-via"] = via
            t.address["B-via"] = t.address["B"]
            t.migrate("A", "B-via", expect_moved=0)  # leaves A a kept connection through the forwarder
            kept = forwarder.silence() if silent else forwarder.poison()
            check(kept == 1, "A did not keep exactly one connection through the forwarder")
            sock = t.connect()
            harness.echo_round_trip(sock, rng.randbytes(CHUNK), "on A")
            moved = t.migrate("A", "B-via", expect_moved=1)
            log("move on a kept connection %s: %.3f ms (roamctl)" % (
                "that swallows what A writes" if silent else "closed at its first write", moved[3]))
            harness.echo_round_trip(sock, rng.randbytes(CHUNK), "on B after the move")
            seen = counters(t, "A")
            log("A counters: %s" % seen)
            check(seen["control_connections_stale"] == 1,
                  "A counted %s stale control connections, expected 1" % seen["control_connections_stale"])
            check(seen["control_connections_reused"] == 1 and seen["control_connections_opened"] == 2,
                  "A reused %s and opened %s control connections, expected 1 and 2" % (
                      seen["control_connections_reused"], seen["control_connections_opened"]))
            sock.close()
            t.stop_all()
        finally:
            forwarder.close()
            t.address.pop("B-via", None)


def main():
    part_reuse()
    part_stale()
    part_stale_on_use()
    part_stale_on_use(silent=True)


if __name__ == "__main__":
    harness.run(main)
