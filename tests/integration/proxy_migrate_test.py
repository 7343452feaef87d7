#!/usr/bin/env python3
"""A proxy session moves between proxies, both legs (proxy_chain.py with proxies A and B,
control ports and the lab pool): the client downloads 64 MiB through proxy A; at 8, 24 and
40 MiB `roamctl migrate` moves the proxy session A -> B -> A -> B ("ok moved 1 of 1
sessions to <the target's carrier address>"). Each move exports the client leg (the client
follows the ACM) and the origin leg: the new proxy tells the origin with an ACM of its own
on a channel from its new address (docs/PROTOCOL.md 3.7), the origin points the leg there
(ACK rebound) and retransmits, which unparks the leg at the new proxy. Asserted: the
download is byte-exact to its end, the client's upload after it reaches the backend, the
origin applied one peer move per proxy move and refused none, and the old proxy holds no
session after each move.
"""
import os
import socket
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402
from proxy_chain import ADDRESS, CommandBackend, ProxyChain, seeded, send_all  # noqa: E402

SIZE = 64 << 20
MOVES = [(8 << 20, "A", "B"), (24 << 20, "B", "A"), (40 << 20, "A", "B")]
SEED = 0x3A7E


def read_exactly(sock, count, digest, chain):
    got = 0
    while got < count:
        try:
            data = sock.recv(min(1 << 20, count - got))
        except ConnectionResetError:
            # The nodes' logs say which leg was given up and in what state (pcb_state_text).
            raise TestFailure("the client got a reset after %d bytes\n%s" % (got, chain.tails()))
        if not data:
            raise TestFailure("the client got EOF after %d of %d bytes\n%s" % (got, count, chain.tails()))
        digest.update(data)
        got += len(data)
    return got


def main():
    down = seeded(SEED, SIZE)
    backend = CommandBackend()
    try:
        with ProxyChain(backend, proxies=("A", "B"), control=True) as chain:
            chain.wait_for_sessions("A", 0)  # the readiness probe's session is gone
            sock = chain.connect("bulk moving %d %d 0" % (SIZE, SEED))
            digest = harness.hashlib.sha256()
            got = 0
            for mark, source, target in MOVES:
                got += read_exactly(sock, mark - got, digest, chain)
                result = chain.migrate(source, target)
                moved = harness.parse_moved(result.stdout)
                check(result.returncode == 0 and moved is not None and moved[0] == 1 and moved[1] == 1,
                      "roamctl migrate %s -> %s: exit %d, stdout %r, stderr %r (expected \"ok moved 1 of 1 ...\")\n%s"
                      % (source, target, result.returncode, result.stdout, result.stderr, chain.tails()))
                check(moved[2] == ADDRESS[target], "the move reported address %s, expected %s"
                      % (moved[2], ADDRESS[target]))
                log("moved the proxy session %s -> %s after %d MiB: %s"
                    % (source, target, got >> 20, result.stdout.strip()))
                chain.wait_for_sessions(source, 0)
                check(chain.status(target)["sessions"] == 1, "%s does not hold the moved session" % target)
            got += read_exactly(sock, SIZE - got, digest, chain)
            check(digest.hexdigest() == harness.sha256(down), "the download differs from what the backend sent")
            origin = chain.status("origin")
            log("origin: peer_moves %d applied %d refused %d, rebound %d" % (
                origin["peer_moves"], origin["peer_moves_applied"], origin["peer_moves_refused"],
                origin["peer_moves_rebound"]))
            check(origin["peer_moves_applied"] == len(MOVES) and origin["peer_moves_refused"] == 0,
                  "the origin applied %d peer moves (refused %d), expected %d" % (
                      origin["peer_moves_applied"], origin["peer_moves_refused"], len(MOVES)))
            up = seeded(SEED + 1, 1 << 20)
            send_all(sock, up, shutdown=True)
            rest = sock.recv(1)
            check(rest == b"", "after the download the client got %r instead of EOF" % rest)
            sock.close()
            record = backend.wait("moving")
            check(record["error"] is None and record["received"] == len(up) and
                  record["sha256"] == harness.sha256(up), "the backend got %r" % (record,))
            log("the download went on byte-exact through B and the upload arrived")
            chain.stop_all()
    finally:
        backend.close()


if __name__ == "__main__":
    harness.run(main)
