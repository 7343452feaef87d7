#!/usr/bin/env python3
"""Receive windows sized to the path (--receive-buffer auto) against lwIP's fixed 4 MiB
(fixed), every process of a harness.TwoServers echo lab at the same mode.

For each mode:
1. A bulk echo: the kernel client writes a seeded stream (8 MiB, scaled) and reads the
   echo at the same time; byte-exact. Its throughput is printed, not asserted.
2. A stalled reader: a new echo connection into which the client writes without reading
   until its writes block for 1.5 s (every queue on the way is full: the echo's unread
   input at A is what its receive window let in); then roamctl moves the session A -> B
   and the client reads the whole echo back, byte-exact. A's status says how many stream
   bytes the move carried (last_move_snapshot_bytes: A's unread input and unsent output;
   the servers run --precopy off, so that the snapshot carries them all).

Asserted: byte-exact streams, each move "ok moved 1 of 1", and with auto the stalled
connection's move carried less than half of what it carried with fixed, and less than
one fixed window (TCP_WND). Figures are printed (the machine is shared and noisy).
"""
import hashlib
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402

MIB = 1024 * 1024
TCP_WND = 4 * MIB  # stack/lwip_port/lwipopts.h
CHUNK = 64 * 1024


def bulk_echo(t, data):
    """Writes `data` and reads its echo concurrently; returns MiB/s."""
    sock = t.connect()
    reader = harness.MarkedReader(sock, [], len(data), what="the bulk echo reader")
    worker = harness.Worker(reader.run, name="bulk-echo")
    started = time.monotonic()
    worker.start()
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    worker.finish(harness.IO_TIMEOUT * 2)
    elapsed = time.monotonic() - started
    sock.close()
    check(reader.eof and reader.received == len(data), "bulk echo: %d of %d bytes back" % (reader.received, len(data)))
    check(reader.digest.hexdigest() == hashlib.sha256(data).hexdigest(), "bulk echo: wrong bytes")
    return len(data) / MIB / elapsed


def stalled_move(t, data):
    """Returns (bytes the move carried, bytes written before the stall)."""
    # Small kernel buffers at this end: less to fill and to read back (roam-client's own
    # sockets and both lwIP stacks still fill up).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    sock.settimeout(harness.IO_TIMEOUT)
    sock.connect(("127.0.0.1", t.forward_port))
    written = harness.write_until_stalled(sock, data, CHUNK, idle_s=1.5)
    check(written < len(data), "the echo never stalled: %d bytes written" % written)
    t.migrate("A", "B", expect_moved=1)
    carried = t.status("A").get("last_move_snapshot_bytes")
    check(carried is not None, "A's status has no last_move_snapshot_bytes")
    sock.shutdown(socket.SHUT_WR)
    reader = harness.MarkedReader(sock, [], written, what="the stalled echo reader")
    reader.run()
    sock.close()
    check(reader.eof and reader.received == written, "stalled echo: %d of %d bytes back" % (reader.received, written))
    check(reader.digest.hexdigest() == hashlib.sha256(data[:written]).hexdigest(), "stalled echo: wrong bytes")
    return carried, written


def run_mode(mode, bulk, fill):
    extra = ["--receive-buffer", mode]
    # Without pre-copy (on by default for busy moves): the move's snapshot must carry the
    # unread input whole for its size to say what the window let in.
    with harness.TwoServers(mode="echo", server_extra=extra + ["--precopy", "off"], client_extra=extra) as t:
        rate = bulk_echo(t, bulk)
        t.wait_for_sessions("A", 0)
        carried, written = stalled_move(t, fill)
        log("%s: bulk echo %.1f MiB/s; stalled reader: %.1f MiB written, the move carried %d bytes"
            % (mode, rate, written / MIB, carried))
        return rate, carried


def main():
    bulk = harness.pseudo_random_bytes(0x3C7E, harness.scaled(8 * MIB, 2 * MIB))
    # More than every buffer between the writer and A's lwIP can hold (kernel socket
    # buffers on both sides of roam-client, its window, A's window and send buffer).
    fill = harness.pseudo_random_bytes(0xF111, 48 * MIB)
    results = {mode: run_mode(mode, bulk, fill) for mode in ("fixed", "auto")}
    log("INFO bulk echo MiB/s: fixed %.1f, auto %.1f" % (results["fixed"][0], results["auto"][0]))
    log("INFO bytes a stalled echo's move carried: fixed %d, auto %d" % (results["fixed"][1], results["auto"][1]))
    check(results["auto"][1] < results["fixed"][1] / 2,
          "auto: the move carried %d bytes, not less than half of fixed's %d" % (results["auto"][1], results["fixed"][1]))
    check(results["auto"][1] < TCP_WND, "auto: the move carried %d bytes, not less than one fixed window (%d)"
          % (results["auto"][1], TCP_WND))


if __name__ == "__main__":
    harness.run(main)
