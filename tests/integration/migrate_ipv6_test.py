#!/usr/bin/env python3
"""An IPv6 connection moves between server processes.

Topology (harness.TwoServers, mode echo, ipv6=True): client 2001:db8:11::2, servers A
2001:db8:12::2 and B 2001:db8:13::2 (each node also keeps its IPv4 address); the client's
forward targets A over IPv6. A kernel client streams 16 MiB of seeded bytes through the
forward while reading the echo back; after each 4 MiB echoed the server moves A->B, B->A,
A->B (roamctl must report the IPv6 address it moved to). The echo must equal what was sent
(length and SHA-256), with a clean EOF and no reset; the client must have followed over
IPv6 (its log names the IPv6 endpoints).
"""
import hashlib
import os
import random
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402

SIZE = 16 << 20
MOVE_EVERY = 4 << 20
CHUNK = 64 << 10
WINDOW = 1 << 20
MOVES = [("A", "B"), ("B", "A"), ("A", "B")]


def main():
    data = random.Random(0x1F6).randbytes(SIZE)
    with harness.TwoServers(mode="echo", ipv6=True) as t:
        sock = t.connect()
        sock.settimeout(harness.IO_TIMEOUT)
        errors = []
        progress = threading.Condition()
        echoed = [0]

        def writer():
            # Paced: at most WINDOW ahead of the echo, so the session is still busy on the
            # server when each move comes (an unpaced writer's bytes can all sit in kernel
            # buffers, and the server finishes the session before the moves).
            try:
                for offset in range(0, SIZE, CHUNK):
                    with progress:
                        progress.wait_for(lambda: offset - echoed[0] <= WINDOW, timeout=harness.IO_TIMEOUT)
                    sock.sendall(data[offset:offset + CHUNK])
                sock.shutdown(socket.SHUT_WR)
            except OSError as e:
                errors.append(repr(e))

        sending = threading.Thread(target=writer, daemon=True)
        sending.start()
        digest = hashlib.sha256()
        received = 0
        moves = list(MOVES)
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
            received += len(chunk)
            with progress:
                echoed[0] = received
                progress.notify()
            if moves and received >= (len(MOVES) - len(moves) + 1) * MOVE_EVERY:
                source, target = moves.pop(0)
                moved = t.migrate(source, target, expect_moved=1)
                log("move %s -> %s at %.1f MiB echoed: %d of %d to %s in %.3f ms" % (
                    source, target, received / (1 << 20), moved[0], moved[1], moved[2], moved[3]))
        sending.join(harness.IO_TIMEOUT)
        sock.close()
        check(not errors, "the kernel client saw an error: %s" % errors)
        check(not moves, "the stream ended before every move happened (%d left)" % len(moves))
        check(received == SIZE and digest.hexdigest() == hashlib.sha256(data).hexdigest(),
              "echo of %d bytes differs from the %d sent" % (received, SIZE))
        log("16 MiB echoed byte-exact over IPv6 across %d moves" % len(MOVES))
        t.wait_for_sessions("B", 0)
        tail = t.client.tail()
        check("2001:db8:13::2" in tail, "the client's log does not show it following to 2001:db8:13::2:\n" + tail)
        t.stop_all()


if __name__ == "__main__":
    harness.run(main)
