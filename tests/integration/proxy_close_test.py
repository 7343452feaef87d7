#!/usr/bin/env python3
"""How streams end through the proxy chain (proxy_chain.py):

1. The client half-closes first (shutdown SHUT_WR after 1 MiB): the backend sees EOF after
   exactly those bytes and can still answer 2 MiB, which the client reads to a clean EOF.
2. The backend half-closes first (2 MiB, then SHUT_WR): the client reads them to EOF and
   can still send 1 MiB, which the backend reads to EOF.
3. The backend resets its connection: the client gets a reset, not a clean EOF.
4. The origin refuses the proxy's origin leg (nothing listens on the port the proxy was
   given): the client gets a reset, and the proxy logs one line saying why.
5. The origin cannot be reached (no origin process: the leg's SYNs go nowhere): the
   client gets a reset once lwIP gives up on the SYN (about 20 s), and the proxy says why.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402
from proxy_chain import CommandBackend, ProxyChain, read_to_end, seeded, send_all  # noqa: E402

UP, DOWN = 1 << 20, 2 << 20
UP_SEED, DOWN_SEED = 0x5EED1, 0x5EED2


def expect_reset(sock, what):
    """Reads until the stream ends; it must end with a reset (bytes before it are fine)."""
    got, _, end = read_to_end(sock)
    check(end == "reset", "%s: the client's stream ended with a clean %s after %d bytes, expected a reset"
          % (what, end.upper(), got))
    return got


def expect_origin_failure(chain, what):
    sock = chain.connect("bulk never 0 0 0")
    try:
        sock.sendall(b"x" * 1000)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the reset came first: read_to_end sees it too
    expect_reset(sock, what)
    sock.close()
    proxy = chain.proxies["A"]
    check(proxy.wait_for_log("the client's connection is reset"),
          "%s: the proxy logged no line about the origin:\n%s" % (what, proxy.tail()))
    line = [l for l in proxy.stderr_text().splitlines() if "the client's connection is reset" in l][0]
    log("%s: the proxy says: %s" % (what, line.strip()))
    return line


def main():
    up = seeded(UP_SEED, UP)
    down = seeded(DOWN_SEED, DOWN)
    backend = CommandBackend()
    try:
        with ProxyChain(backend) as chain:
            sock = chain.connect("reply first %d %d" % (DOWN, DOWN_SEED))
            send_all(sock, up, shutdown=True)
            got, digest, end = read_to_end(sock, DOWN)
            sock.close()
            record = backend.wait("first")
            check(record["error"] is None and record["eof_before_send"] and record["received"] == UP and
                  record["sha256"] == harness.sha256(up),
                  "client half-close: the backend got %r, expected EOF after %d bytes" % (record, UP))
            check(end == "eof" and got == DOWN and digest == harness.sha256(down),
                  "client half-close: the answer after it was %d bytes ending in %s, expected %d to EOF"
                  % (got, end, DOWN))
            log("1. client half-close: the backend saw EOF after %d bytes and still answered %d" % (UP, DOWN))

            sock = chain.connect("first second %d %d" % (DOWN, DOWN_SEED))
            got, digest, end = read_to_end(sock, DOWN)
            check(end == "eof" and got == DOWN and digest == harness.sha256(down),
                  "backend half-close: the client read %d bytes ending in %s, expected %d to EOF" % (got, end, DOWN))
            send_all(sock, up, shutdown=True)
            record = backend.wait("second")
            sock.close()
            check(record["error"] is None and record["received"] == UP and record["sha256"] == harness.sha256(up),
                  "backend half-close: the backend then got %r, expected %d bytes to EOF" % (record, UP))
            log("2. backend half-close: the client saw EOF after %d bytes and still sent %d" % (DOWN, UP))

            sock = chain.connect("reset third %d %d" % (DOWN, DOWN_SEED))
            got = expect_reset(sock, "backend reset")
            sock.close()
            log("3. backend reset: the client got a reset after %d bytes" % got)
            chain.stop_all()

        with ProxyChain(backend, origin_port=7999) as chain:
            line = expect_origin_failure(chain, "4. origin refuses")
            check("7999" in line, "the proxy's line does not name the origin: %s" % line)
            chain.stop_all()

        with ProxyChain(backend, origin=False) as chain:
            expect_origin_failure(chain, "5. origin unreachable")
            chain.stop_all()
    finally:
        backend.close()


if __name__ == "__main__":
    harness.run(main)
