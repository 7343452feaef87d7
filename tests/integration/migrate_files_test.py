#!/usr/bin/env python3
"""A 200 MiB download keeps going while its server moves five times.

Topology (harness.TwoServers): servers A (198.18.12.2) and B (198.18.13.2) both run
`files --root DIR` over the same directory; the client's forward targets A.

A 200 MiB file of seeded pseudo-random bytes is written to a temp dir once. A kernel client
asks for it (`NAME\\n`) through the forward and reads to EOF in a thread. Each time another
~30 MiB has arrived, the main thread moves the server with `roamctl migrate`:
A->B, B->A, A->B, B->A, A->B (five moves; the reader waits at a mark only until that move
has been started, so every move happens with tens of MiB still to come and the reader keeps
reading while it runs).

Asserted: every roamctl printed "ok moved 1 of 1 sessions to <target> ..." (exit 0); the
bytes received are the file (length and SHA-256); the kernel client saw no reset and a
clean EOF; the final server (B) counts sessions_imported >= 1. Timings (roamctl's own and
the download's throughput) are printed as information only.
"""
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

MIB = 1024 * 1024
SIZE = 200 * MIB
MOVE_EVERY = 30 * MIB
MOVES = [("A", "B"), ("B", "A"), ("A", "B"), ("B", "A"), ("A", "B")]
SEED = 0xF11E5
NAME = "big.bin"


def write_file(directory):
    """Writes the seeded file in 8 MiB pieces; returns its SHA-256."""
    rng = random.Random(SEED)
    digest = hashlib.sha256()
    with open(os.path.join(directory, NAME), "wb") as f:
        for _ in range(SIZE // (8 * MIB)):
            block = rng.randbytes(8 * MIB)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def main():
    directory = tempfile.mkdtemp(prefix="roam-it-files-data-")
    try:
        log("writing a %d MiB seeded file to %s" % (SIZE // MIB, directory))
        want = write_file(directory)
        with harness.TwoServers(mode="files", mode_args=["--root", directory]) as t:
            sock = t.connect()
            download = harness.MarkedReader(sock, [MOVE_EVERY * (i + 1) for i in range(len(MOVES))], SIZE)
            started = time.monotonic()
            sock.sendall((NAME + "\n").encode())
            reader = harness.Worker(download.run, name="download")
            reader.start()
            reports = []
            for index, (source, destination) in enumerate(MOVES):
                if not download.wait_for_mark(index, reader):
                    reader.finish()  # raises the reader's failure, if any
                    raise TestFailure("the download ended after %d bytes, before move %d (at %d MiB)"
                                      % (download.received, index + 1, MOVE_EVERY * (index + 1) // MIB))
                at = download.received
                download.release(index)  # the reader goes on while roamctl runs
                wall = time.monotonic()
                moved = t.migrate(source, destination, expect_moved=1)
                wall = time.monotonic() - wall
                reports.append((index + 1, source, destination, at, moved[3], wall))
                log("move %d %s->%s at %.1f MiB received: roamctl reports %.3f ms (roamctl wall %.1f ms)"
                    % (index + 1, source, destination, at / MIB, moved[3], wall * 1000))
            reader.finish(harness.IO_TIMEOUT * 2)
            elapsed = time.monotonic() - started
            sock.close()

            log("received %d bytes, sha256 %s" % (download.received, download.digest.hexdigest()))
            check(download.eof, "no EOF seen")
            check(download.received == SIZE, "received %d bytes, expected exactly %d" % (download.received, SIZE))
            check(download.digest.hexdigest() == want, "received the right length but wrong bytes (sha256 %s, "
                  "expected %s)" % (download.digest.hexdigest(), want))

            final = MOVES[-1][1]
            status = {name: t.status(name) for name in ("A", "B")}
            for name in ("A", "B"):
                log("status %s: %s" % (name, status[name]))
            check(status[final]["sessions_imported"] >= 1,
                  "final server %s: sessions_imported %d, expected >= 1" % (final, status[final]["sessions_imported"]))

            log("INFO roamctl-reported move times (ms): %s" % ", ".join("%.3f" % r[4] for r in reports))
            log("INFO roamctl wall times (ms): %s" % ", ".join("%.1f" % (r[5] * 1000) for r in reports))
            log("INFO download: %d MiB in %.2f s = %.1f MiB/s with %d moves"
                % (SIZE // MIB, elapsed, SIZE / MIB / elapsed, len(MOVES)))
            stops = t.stop_all()
            for key in ("client", "A", "B"):
                log("%s counters: %s" % (key, stops[key].counters))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
