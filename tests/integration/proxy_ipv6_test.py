#!/usr/bin/env python3
"""The proxy chain over IPv6 (proxy_chain.py, ipv6=True): the client's forward targets the
proxy at [2001:db8:12::2]:7000 and the proxy's origin legs go to [2001:db8:14::2]:7000 (the
origin has no IPv4 route back: only IPv6 origin legs can work).
16 MiB each way at once, byte-exact, then a client half-close answered after the EOF.
Then, with proxies A and B (control ports, the lab pool): a 32 MiB download through A
moves A -> B at 4 MiB, both legs over IPv6 (the client follows an IPv6 ACM; B tells the
origin over IPv6), byte-exact to its end.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402
from proxy_chain import CommandBackend, ProxyChain, read_to_end, seeded, send_all  # noqa: E402

SIZE = 16 << 20
UP_SEED, DOWN_SEED = 0x61, 0x62


def main():
    up = seeded(UP_SEED, SIZE)
    down = seeded(DOWN_SEED, SIZE)
    backend = CommandBackend()
    try:
        with ProxyChain(backend, ipv6=True) as chain:
            sock = chain.connect("bulk six %d %d 0" % (SIZE, DOWN_SEED))
            sender = harness.Worker(send_all, sock, up, name="client-send")
            sender.start()
            got, digest, end = read_to_end(sock, SIZE)
            sender.finish()
            sock.close()
            record = backend.wait("six")
            check(end == "eof" and got == SIZE and digest == harness.sha256(down),
                  "the client received %d bytes ending in %s, expected %d byte-exact" % (got, end, SIZE))
            check(record["error"] is None and record["received"] == SIZE and record["sha256"] == harness.sha256(up),
                  "the backend received %r, expected %d byte-exact" % (record, SIZE))
            log("%d MiB each way byte-exact over IPv6" % (SIZE >> 20))

            sock = chain.connect("reply half 4096 %d" % DOWN_SEED)
            send_all(sock, up[:65536], shutdown=True)
            got, digest, end = read_to_end(sock, 4096)
            sock.close()
            record = backend.wait("half")
            check(record["eof_before_send"] and record["received"] == 65536,
                  "half-close over IPv6: the backend got %r" % (record,))
            check(end == "eof" and got == 4096 and digest == harness.sha256(down[:4096]),
                  "half-close over IPv6: the answer was %d bytes ending in %s" % (got, end))
            chain.stop_all()
        move_over_ipv6(backend)
    finally:
        backend.close()


def move_over_ipv6(backend):
    size, mark = 32 << 20, 4 << 20
    down = seeded(DOWN_SEED + 1, size)
    with ProxyChain(backend, ipv6=True, proxies=("A", "B"), control=True) as chain:
        chain.wait_for_sessions("A", 0)
        sock = chain.connect("first sixmove %d %d" % (size, DOWN_SEED + 1))
        digest = harness.hashlib.sha256()
        got = 0
        while got < mark:
            data = sock.recv(min(1 << 20, mark - got))
            check(data, "EOF after %d bytes, before the move" % got)
            digest.update(data)
            got += len(data)
        result = chain.migrate("A", "B")
        moved = harness.parse_moved(result.stdout)
        check(result.returncode == 0 and moved is not None and moved[0] == 1 and moved[1] == 1,
              "roamctl migrate A -> B over IPv6: exit %d, stdout %r, stderr %r\n%s"
              % (result.returncode, result.stdout, result.stderr, chain.tails()))
        rest, rest_digest, end = read_to_end(sock, size - got)
        sock.close()
        check(end == "eof" and got + rest == size, "after the move: %d more bytes ending in %s, expected %d"
              % (rest, end, size - got))
        whole = harness.hashlib.sha256(down[:got])
        check(whole.hexdigest() == digest.hexdigest() and rest_digest == harness.sha256(down[got:]),
              "the download through the moved IPv6 proxy differs from what the backend sent")
        origin = chain.status("origin")
        check(origin["peer_moves_applied"] == 1 and origin["peer_moves_refused"] == 0,
              "the origin applied %d peer moves (refused %d), expected 1"
              % (origin["peer_moves_applied"], origin["peer_moves_refused"]))
        log("a proxy session moved A -> B over IPv6 (both legs), byte-exact: %s" % result.stdout.strip())
        chain.stop_all()


if __name__ == "__main__":
    harness.run(main)
