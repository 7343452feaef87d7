#!/usr/bin/env python3
"""Bulk transfer both ways at once through the whole relay path:

  kernel client -> roam-client -L -> carrier over the UDP link -> roam-server relay --backend
  -> kernel TCP backend (a Python thread)

The backend reads everything until EOF while sending 64 MiB of seeded pseudo-random bytes,
then closes; the client sends its own 64 MiB (another seed) and reads until EOF. Both
directions must arrive byte-exact (SHA-256 and exact length). Throughput is printed as
information only.
"""
import hashlib
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

SIZE = 64 * 1024 * 1024
CHUNK = 256 * 1024
CLIENT_SEED = 0xC11E47
BACKEND_SEED = 0xBAC4E9D


def send_all(sock, data, shutdown=True):
    view = memoryview(data)
    for offset in range(0, len(view), CHUNK):
        sock.sendall(view[offset:offset + CHUNK])
    if shutdown:
        sock.shutdown(socket.SHUT_WR)
    return len(data)


class Backend(harness.KernelBackend):
    """Kernel TCP backend: every accepted connection is read to EOF while `payload` is sent
    on it concurrently; then the socket is closed. Results are kept per connection."""

    def __init__(self, payload):
        self.payload = payload
        self.connections = []   # dicts, one per accepted connection
        super().__init__(backlog=16)
        self.changed = threading.Condition(self.lock)

    def serve(self, conn):
        record = {"received": 0, "sha256": None, "sent": 0, "send_error": None,
                  "recv_error": None, "done": False}
        with self.lock:
            self.connections.append(record)
        conn.settimeout(harness.IO_TIMEOUT)

        def sender():
            try:
                record["sent"] = send_all(conn, self.payload)
            except OSError as e:
                record["send_error"] = repr(e)

        sending = threading.Thread(target=sender, name="backend-send", daemon=True)
        sending.start()
        hasher = hashlib.sha256()
        try:
            record["received"], _ = harness.recv_until_eof(conn, hasher)
        except OSError as e:
            record["recv_error"] = repr(e)
        record["sha256"] = hasher.hexdigest()
        sending.join(harness.IO_TIMEOUT)
        if sending.is_alive():
            record["send_error"] = "sender still blocked after %.0f s" % harness.IO_TIMEOUT
        conn.close()
        with self.lock:
            record["done"] = True
            self.changed.notify_all()

    def wait_for_bulk(self, timeout):
        """The connection that carried data (the harness's readiness probe carries none)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                carrying = [c for c in self.connections if c["received"] > 0 or c["sent"] > 0]
                done = [c for c in carrying if c["done"] and c["received"] > 0]
                if done:
                    return done, list(self.connections)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TestFailure("backend: no data connection finished within %.0f s; connections: %r"
                                      % (timeout, self.connections))
                self.changed.wait(min(remaining, 1.0))


def main():
    log("generating 2 x %d MiB of seeded pseudo-random data" % (SIZE >> 20))
    to_backend = harness.pseudo_random_bytes(CLIENT_SEED, SIZE)
    to_client = harness.pseudo_random_bytes(BACKEND_SEED, SIZE)
    want_at_backend = harness.sha256(to_backend)
    want_at_client = harness.sha256(to_client)

    backend = Backend(to_client)
    try:
        with harness.Pair(mode="relay", backend="127.0.0.1:%d" % backend.port) as pair:
            sock = pair.connect()
            started = time.monotonic()
            sender = harness.Worker(send_all, sock, to_backend, name="client-send")
            sender.start()
            hasher = hashlib.sha256()
            try:
                got, _ = harness.recv_until_eof(sock, hasher, limit=SIZE)
            except (OSError, socket.timeout) as e:
                raise TestFailure("client side: reading from the forward failed: %r" % e)
            sender.finish()
            elapsed = time.monotonic() - started
            sock.close()
            done, seen = backend.wait_for_bulk(harness.IO_TIMEOUT)

            log("client received %d bytes, sha256 %s" % (got, hasher.hexdigest()))
            check(got == SIZE, "client received %d bytes, expected exactly %d" % (got, SIZE))
            check(hasher.hexdigest() == want_at_client,
                  "client received the right length but wrong bytes (sha256 %s, expected %s)"
                  % (hasher.hexdigest(), want_at_client))

            check(len(done) == 1, "expected exactly one backend connection with data, got %d: %r"
                  % (len(done), done))
            record = done[0]
            log("backend connections seen: %d (the others are the harness's readiness probe)" % len(seen))
            log("backend received %d bytes, sha256 %s; sent %d (error %s)"
                % (record["received"], record["sha256"], record["sent"], record["send_error"]))
            check(record["recv_error"] is None, "backend read failed: %s" % record["recv_error"])
            check(record["received"] == SIZE, "backend received %d bytes, expected exactly %d"
                  % (record["received"], SIZE))
            check(record["sha256"] == want_at_backend,
                  "backend received the right length but wrong bytes (sha256 %s, expected %s)"
                  % (record["sha256"], want_at_backend))
            check(record["send_error"] is None and record["sent"] == SIZE,
                  "backend send did not complete: sent %d, error %s" % (record["sent"], record["send_error"]))

            mib = SIZE / (1 << 20)
            log("INFO throughput: %.0f MiB each way in %.2f s = %.1f MiB/s per direction, %.1f MiB/s total"
                % (mib, elapsed, mib / elapsed, 2 * mib / elapsed))
            client_stop, server_stop = pair.stop_all()
            log("client counters: %s" % (client_stop.counters,))
            log("server counters: %s" % (server_stop.counters,))
    finally:
        backend.close()


if __name__ == "__main__":
    harness.run(main)
