#!/usr/bin/env python3
"""Send buffers sized to the path (--send-buffer auto) against the fixed 4 MiB (fixed).

For each mode, a fresh harness.TwoServers (files --root DIR; the servers run with
--send-buffer MODE, and --precopy off so that the snapshot carries the whole queue) serves a seeded file (48 MiB, not scaled)
through the client's forward; at 8 MiB, roamctl moves the download A -> B. A's
status then says how many stream bytes the move had to carry (last_move_snapshot_bytes:
the connection's send queue and unread input at the freeze).

Asserted: both downloads are byte-exact and each move answered "ok moved 1 of 1"; with
auto the move carried less than the fixed 4 MiB send buffer can hold (TCP_SND_BUF). The
bytes carried and each download's throughput are printed, not asserted (the machine is
shared and noisy).
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
from harness import check, log  # noqa: E402

MIB = 1024 * 1024
SEND_BUFFER_CAP = 4 * MIB  # TCP_SND_BUF (stack/lwip_port/lwipopts.h)
NAME = "bulk.bin"


def download_with_move(directory, size, want, mode):
    """Returns (bytes the move carried, MiB/s before the move, MiB/s overall)."""
    with harness.TwoServers(mode="files", mode_args=["--root", directory],
                            server_extra=["--send-buffer", mode, "--precopy", "off"]) as t:
        sock = t.connect()
        # The move comes early (at 8 MiB): the rest must exceed every buffer between the files
        # app and this reader (4 MiB send buffer, the client's 4 MiB window, the kernel
        # socket buffers of the forward), or the app has written its last byte already and
        # the session stays as 'ending'.
        download = harness.MarkedReader(sock, [8 * MIB], size)
        started = time.monotonic()
        sock.sendall((NAME + "\n").encode())
        reader = harness.Worker(download.run, name="download")
        reader.start()
        if not download.wait_for_mark(0, reader):
            reader.finish()
            check(False, "%s: the download ended after %d bytes, before the move" % (mode, download.received))
        before = time.monotonic() - started
        at = download.received
        download.release(0)
        moved = t.migrate("A", "B", expect_moved=1)
        reader.finish(harness.IO_TIMEOUT * 2)
        elapsed = time.monotonic() - started
        sock.close()
        check(download.eof and download.received == size,
              "%s: received %d bytes of %d (eof %s)" % (mode, download.received, size, download.eof))
        check(download.digest.hexdigest() == want, "%s: wrong bytes (sha256 %s)" % (mode, download.digest.hexdigest()))
        carried = t.status("A").get("last_move_snapshot_bytes")
        check(carried is not None, "%s: A's status has no last_move_snapshot_bytes" % mode)
        log("%s: move at %.1f MiB carried %d bytes (roamctl %.3f ms); %.1f MiB/s before the move, %.1f MiB/s overall"
            % (mode, at / MIB, carried, moved[3], at / MIB / before, size / MIB / elapsed))
        return carried, at / MIB / before, size / MIB / elapsed


def main():
    directory = tempfile.mkdtemp(prefix="roam-it-sndbuf-")
    try:
        size = 48 * MIB  # not scaled: see download_with_move
        data = random.Random(0x5B0F).randbytes(size)
        with open(os.path.join(directory, NAME), "wb") as f:
            f.write(data)
        want = hashlib.sha256(data).hexdigest()
        del data
        results = {mode: download_with_move(directory, size, want, mode) for mode in ("fixed", "auto")}
        log("INFO bytes a move carried: fixed %d, auto %d" % (results["fixed"][0], results["auto"][0]))
        log("INFO MiB/s before the move: fixed %.1f, auto %.1f; overall: fixed %.1f, auto %.1f"
            % (results["fixed"][1], results["auto"][1], results["fixed"][2], results["auto"][2]))
        check(results["auto"][0] < SEND_BUFFER_CAP,
              "auto: the move carried %d bytes, not less than the fixed %d" % (results["auto"][0], SEND_BUFFER_CAP))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
