#!/usr/bin/env python3
"""200 concurrent connections through roam-client -> roam-server, each with its own 64 KiB
payload, all open at the same time; every echo must come back byte-exact.

Phase 1: roam-server echo (the echo app in the userspace stack).
Phase 2: roam-server relay --backend to a kernel echo backend written in Python (threaded).
"""
import os
import selectors
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

CONNECTIONS = 200
PAYLOAD = 64 * 1024


def payload_for(index):
    # Distinct per connection: a seeded stream, with the index stamped at the front.
    body = harness.pseudo_random_bytes(1000 + index, PAYLOAD)
    return index.to_bytes(4, "big") + body[4:]


class Conn:
    def __init__(self, index, sock):
        self.index = index
        self.sock = sock
        self.out = memoryview(payload_for(index))
        self.sent = 0
        self.received = bytearray()
        self.eof = False
        self.error = None


def run_echo_round(pair, label):
    """Opens CONNECTIONS sockets to the forward, then drives them all at once with a selector."""
    conns = []
    try:
        for i in range(CONNECTIONS):
            try:
                sock = socket.create_connection(("127.0.0.1", pair.forward_port), timeout=30)
            except OSError as e:
                raise TestFailure("%s: connect #%d to the forward failed: %r" % (label, i, e))
            sock.setblocking(False)
            conns.append(Conn(i, sock))
        log("%s: %d connections open" % (label, len(conns)))

        sel = selectors.DefaultSelector()
        for c in conns:
            sel.register(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        open_count = len(conns)
        deadline = time.monotonic() + harness.IO_TIMEOUT
        while open_count > 0:
            if time.monotonic() > deadline:
                stuck = [c.index for c in conns if not c.eof and c.error is None]
                raise TestFailure("%s: %d connections still unfinished after %.0f s (e.g. #%s: sent %d, got %d)"
                                  % (label, len(stuck), harness.IO_TIMEOUT, stuck[0], conns[stuck[0]].sent,
                                     len(conns[stuck[0]].received)))
            for key, events in sel.select(timeout=1.0):
                c = key.data
                try:
                    if events & selectors.EVENT_WRITE and c.sent < len(c.out):
                        c.sent += c.sock.send(c.out[c.sent:c.sent + 65536])
                        if c.sent == len(c.out):
                            c.sock.shutdown(socket.SHUT_WR)
                            sel.modify(c.sock, selectors.EVENT_READ, c)
                    if events & selectors.EVENT_READ:
                        data = c.sock.recv(65536)
                        if data:
                            c.received += data
                            if len(c.received) > PAYLOAD:
                                raise TestFailure("%s: connection #%d received more than it sent" % (label, c.index))
                        else:
                            c.eof = True
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    c.error = e
                if c.eof or c.error is not None:
                    sel.unregister(c.sock)
                    open_count -= 1
        sel.close()
    finally:
        for c in conns:
            c.sock.close()

    failures = []
    for c in conns:
        if c.error is not None:
            failures.append("#%d: socket error %r after sending %d and receiving %d" % (c.index, c.error, c.sent, len(c.received)))
        elif bytes(c.received) != payload_for(c.index):
            first_bad = next((i for i, (a, b) in enumerate(zip(c.received, payload_for(c.index))) if a != b),
                             min(len(c.received), PAYLOAD))
            failures.append("#%d: echo mismatch (got %d of %d bytes, first difference at %d)"
                            % (c.index, len(c.received), PAYLOAD, first_bad))
    if failures:
        raise TestFailure("%s: %d of %d connections failed:\n  %s" % (label, len(failures), CONNECTIONS,
                                                                       "\n  ".join(failures[:20])))
    log("%s: all %d echoes byte-exact (%d KiB each)" % (label, CONNECTIONS, PAYLOAD >> 10))


class EchoBackend(harness.KernelBackend):
    """Threaded kernel TCP echo server: one thread per connection, echo until EOF, then close."""

    def __init__(self):
        self.accepted = 0
        self.errors = []
        super().__init__()

    def serve(self, conn):
        with self.lock:
            self.accepted += 1
        conn.settimeout(harness.IO_TIMEOUT)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)
        except OSError as e:
            with self.lock:
                self.errors.append(repr(e))
        finally:
            conn.close()


def main():
    with harness.Pair(mode="echo") as pair:
        run_echo_round(pair, "echo")
        _, server = pair.stop_all()
        log("echo server counters: %s" % (server.counters,))

    backend = EchoBackend()
    try:
        with harness.Pair(mode="relay", backend="127.0.0.1:%d" % backend.port) as pair:
            run_echo_round(pair, "relay")
            _, server = pair.stop_all()
            log("relay server counters: %s" % (server.counters,))
        # the probe connection plus the 200 (errors on the probe's connection are harmless)
        check(backend.accepted >= CONNECTIONS, "backend accepted only %d connections" % backend.accepted)
        log("backend accepted %d connections (incl. readiness probe), %d ended with an error"
            % (backend.accepted, len(backend.errors)))
    finally:
        backend.close()


if __name__ == "__main__":
    harness.run(main)
