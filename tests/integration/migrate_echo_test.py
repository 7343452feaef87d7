#!/usr/bin/env python3
"""Echo sessions move between servers: one busy upload, then 1000 idle connections at once.

Topology (harness.TwoServers, mode echo): servers A (198.18.12.2) and B (198.18.13.2);
the client's forward targets A. Each phase has its own processes.

1. Upload direction: a kernel client sends 64 MiB of seeded pseudo-random bytes through the
   forward (then half-closes) while a thread reads the echo back concurrently. Each time
   another 16 MiB has come back, the server moves: A->B, B->A, A->B (roamctl must print
   "ok moved 1 of 1"). The echo must be the bytes sent (length and SHA-256), with no reset
   and a clean EOF.
2. Many at once: 1000 connections, each established with one small echo round trip, sit
   idle on A; a single `roamctl migrate` must print "ok moved 1000 of 1000"; B then holds
   1000 sessions, A none; every connection does another round trip (now served by B); after
   closing them all, B's sessions drain to 0. The test raises its soft RLIMIT_NOFILE (the
   apps inherit it) when it is below what 1000 connections need, and says so.

Timings are printed as information only.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

MIB = 1024 * 1024
UPLOAD = 64 * MIB
CHUNK = 256 * 1024
MOVE_EVERY = 16 * MIB
MOVES = [("A", "B"), ("B", "A"), ("A", "B")]
SEED = 0xEC40
IDLE_CONNECTIONS = 1000
NOFILE_WANTED = 4 * IDLE_CONNECTIONS + 256  # our sockets, the client's two per connection, slack


def send_all(sock, data):
    view = memoryview(data)
    for offset in range(0, len(view), CHUNK):
        sock.sendall(view[offset:offset + CHUNK])
    sock.shutdown(socket.SHUT_WR)
    return len(data)




def upload_with_moves():
    data = harness.pseudo_random_bytes(SEED, UPLOAD)
    want = harness.sha256(data)
    with harness.TwoServers(mode="echo") as t:
        sock = t.connect()
        reader = harness.MarkedReader(sock, [MOVE_EVERY * (i + 1) for i in range(len(MOVES))], UPLOAD)
        started = time.monotonic()
        receiving = harness.Worker(reader.run, name="echo-read")
        receiving.start()
        sending = harness.Worker(send_all, sock, data, name="upload")
        sending.start()
        times = []
        for index, (source, destination) in enumerate(MOVES):
            if not reader.wait_for_mark(index, receiving):
                receiving.finish()
                raise TestFailure("the echo ended after %d bytes, before move %d" % (reader.received, index + 1))
            at = reader.received
            reader.release(index)
            moved = t.migrate(source, destination, expect_moved=1)
            times.append(moved[3])
            log("upload: move %d %s->%s at %.1f MiB echoed: roamctl reports %.3f ms"
                % (index + 1, source, destination, at / MIB, moved[3]))
        sending.finish()
        receiving.finish(harness.IO_TIMEOUT * 2)
        elapsed = time.monotonic() - started
        sock.close()
        log("upload: echoed %d bytes, sha256 %s" % (reader.received, reader.digest.hexdigest()))
        check(reader.eof, "upload: no EOF")
        check(reader.received == UPLOAD, "upload: echoed %d bytes, expected exactly %d" % (reader.received, UPLOAD))
        check(reader.digest.hexdigest() == want, "upload: echoed the right length but wrong bytes (sha256 %s, "
              "expected %s)" % (reader.digest.hexdigest(), want))
        final = MOVES[-1][1]
        status = t.status(final)
        log("upload: status %s: %s" % (final, status))
        check(status["sessions_imported"] >= 1, "upload: %s sessions_imported %d" % (final, status["sessions_imported"]))
        log("INFO upload: roamctl-reported move times (ms): %s" % ", ".join("%.3f" % x for x in times))
        log("INFO upload: %d MiB sent and echoed in %.2f s = %.1f MiB/s each way with %d moves"
            % (UPLOAD // MIB, elapsed, UPLOAD / MIB / elapsed, len(MOVES)))
        t.stop_all()


def many_idle_connections():
    old, new = harness.raise_nofile_limit(NOFILE_WANTED)
    if new != old:
        log("raised the soft RLIMIT_NOFILE from %d to %d (needed about %d)" % (old, new, NOFILE_WANTED))
    else:
        log("soft RLIMIT_NOFILE is %d (needed about %d): unchanged" % (old, NOFILE_WANTED))
    check(new >= NOFILE_WANTED, "the hard RLIMIT_NOFILE allows only %d descriptors, %d needed" % (new, NOFILE_WANTED))

    with harness.TwoServers(mode="echo") as t:
        socks = []
        try:
            started = time.monotonic()
            for i in range(IDLE_CONNECTIONS):
                sock = t.connect()
                socks.append(sock)
                harness.echo_round_trip(sock, b"hello %d\n" % i)
            log("opened %d connections, one echo each, in %.2f s" % (len(socks), time.monotonic() - started))
            t.wait_for_sessions("A", IDLE_CONNECTIONS)

            moved = t.migrate("A", "B", expect_moved=IDLE_CONNECTIONS)
            log("INFO moved %d idle connections at once: roamctl reports %.3f ms" % (moved[0], moved[3]))
            status = {name: t.status(name) for name in ("A", "B")}
            for name in ("A", "B"):
                log("status %s: %s" % (name, status[name]))
            check(status["B"]["sessions"] == IDLE_CONNECTIONS and status["B"]["sessions_imported"] == IDLE_CONNECTIONS,
                  "B holds %d sessions (%d imported), expected %d" % (
                      status["B"]["sessions"], status["B"]["sessions_imported"], IDLE_CONNECTIONS))
            check(status["A"]["sessions"] == 0 and status["A"]["sessions_exported"] == IDLE_CONNECTIONS,
                  "A still holds %d sessions (%d exported)" % (status["A"]["sessions"], status["A"]["sessions_exported"]))

            started = time.monotonic()
            for i, sock in enumerate(socks):
                harness.echo_round_trip(sock, b"again %d after the move\n" % i)
            log("INFO %d round trips after the move in %.2f s" % (len(socks), time.monotonic() - started))
        finally:
            for sock in socks:
                sock.close()
        t.wait_for_sessions("B", 0)
        t.wait_for_sessions("A", 0)
        log("all %d connections closed; B and A hold no sessions" % IDLE_CONNECTIONS)
        t.stop_all()


def main():
    upload_with_moves()
    many_idle_connections()


if __name__ == "__main__":
    harness.run(main)
