#!/usr/bin/env python3
"""Pre-copy (docs/PROTOCOL.md 4.3 "Pre-copy"): a busy echo moves with its queues sent ahead
of the freeze, and a move that fails after the pre-copy leaves the connection at A.

Topology (harness.TwoServers, mode echo): servers A and B; the client's forward targets A.
Each phase has its own processes.

1. Busy move, both servers at the default --precopy auto: a kernel client writes up to
   BUSY bytes (40 MiB) into the echo without reading, until its writes stall (every queue
   on the way holds bytes: A's send queue and the echo's unread input, more than auto's
   128 KiB); then `roamctl migrate A -> B` must print "ok moved 1 of 1", and the client
   half-closes and reads the echo to the end: exactly the bytes written (SHA-256). B
   announced pre-copy, so A's status must count pre-copied bytes relied on
   (last_move_precopy_bytes > 0), B's the same bytes spliced, no mismatch, and nothing
   left held.
2. Failure after the pre-copy (both --precopy on): A runs with --segment-mac and B
   without, so B takes the pre-copied bytes and then refuses the session ("uses the
   segment MAC"): roamctl must print an error naming it, A must still hold the session, B
   none and nothing held (the bytes counted as discarded), and the echo, still served by
   A, must come back byte-exact.
3. A target that does not announce pre-copy: A at auto, B with --precopy off (it answers
   the address request without the `precopy` word, as a server that predates it would):
   the busy move must succeed without a pre-copy round (precopy_skipped_target 1, no
   precopy frame reached B), byte-exact.

4. The held round (PROTOCOL.md 4.3): a `files` download, both servers --precopy on, moved
   at 16 MiB of 64 MiB while the client reads: the download holds its output for the last
   round, so the freeze carries no stream bytes (A's last_move_snapshot_bytes 0, after a
   pre-copy), and the file arrives whole (SHA-256).

Nothing is timed.
"""
import os
import shutil
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

MIB = 1024 * 1024
# Enough to fill every queue on the way (the kernel's socket buffers, the client's and
# A's windows and send buffers) so the writes stall with MiBs held at A; not scaled with
# ROAMSTACK_TEST_SCALE, since a smaller stream would leave A's queues empty.
BUSY = 40 * MIB
CHUNK = 64 * 1024
SEED = 0x9C0F


def finish_echo(sock, sent):
    """Half-closes and reads the echo of the `sent` bytes written; returns it."""
    sock.shutdown(socket.SHUT_WR)
    got = bytearray()
    sock.settimeout(harness.IO_TIMEOUT)
    while len(got) < sent:
        chunk = sock.recv(256 * 1024)
        if not chunk:
            break
        got += chunk
    return bytes(got)


def read_back_echo(sock, sent, data, phase):
    """Reads the echo of the `sent` bytes written (finish_echo), closes the socket and
    checks its length and SHA-256 against data[:sent]; `phase` names the failure."""
    got = finish_echo(sock, sent)
    sock.close()
    check(len(got) == sent, "%s: echoed %d bytes, expected %d" % (phase, len(got), sent))
    check(harness.sha256(got) == harness.sha256(data[:sent]), "%s: the echo differs from what was written" % phase)


def busy_echo(t, data):
    sock = t.connect()
    harness.echo_round_trip(sock, b"ready\n")
    t.wait_for_sessions("A", 1)
    sent = harness.write_until_stalled(sock, data, CHUNK, idle_s=0.5)  # the echo of exactly those is read back
    log("wrote %.2f MiB of %.2f MiB before the writes stalled" % (sent / MIB, len(data) / MIB))
    check(sent < len(data), "the writes never stalled: the queues at A may be empty")
    return sock, sent


def busy_move():
    data = harness.pseudo_random_bytes(SEED, BUSY)
    with harness.TwoServers(mode="echo") as t:
        sock, sent = busy_echo(t, data)
        moved = t.migrate("A", "B", expect_moved=1)
        log("busy move: %s" % t.last_summary)
        read_back_echo(sock, sent, data, "busy move")
        a, b = t.status("A"), t.status("B")
        log("A: precopy_rounds %s, sent %s, relied %s, last_move_snapshot_bytes %s, frozen %s us" % (
            a["precopy_rounds"], a["precopy_bytes_sent"], a["precopy_bytes_relied"], a["last_move_snapshot_bytes"],
            a["last_move_frozen_us"]))
        log("B: precopy received %s, used %s, discarded %s, mismatches %s, held %s" % (
            b["precopy_bytes_received"], b["precopy_bytes_used"], b["precopy_bytes_discarded"],
            b["precopy_mismatches"], b["precopy_bytes_held"]))
        check(a["precopy_rounds"] >= 1 and a["precopy_bytes_relied"] > 0, "busy move: A relied on no pre-copied byte")
        check(a["last_move_precopy_bytes"] > 0, "busy move: auto did not pre-copy (last_move_precopy_bytes 0)")
        check(a["precopy_skipped_target"] == 0 and a["precopy_skipped_idle"] == 0,
              "busy move: A counted a skipped pre-copy (target %d, idle %d)" % (
                  a["precopy_skipped_target"], a["precopy_skipped_idle"]))
        check(b["precopy_bytes_used"] == a["precopy_bytes_relied"],
              "busy move: B spliced %d bytes, A relied on %d" % (b["precopy_bytes_used"], a["precopy_bytes_relied"]))
        check(b["precopy_mismatches"] == 0, "busy move: B counted %d mismatches" % b["precopy_mismatches"])
        check(b["precopy_bytes_held"] == 0, "busy move: B still holds %d pre-copied bytes" % b["precopy_bytes_held"])
        check(b["sessions_imported"] == 1, "busy move: B imported %d sessions" % b["sessions_imported"])
        log("INFO busy move (%.1f MiB written): roamctl reports %.3f ms" % (sent / MIB, moved[3]))
        t.stop_all()


def failed_after_precopy():
    data = harness.pseudo_random_bytes(SEED + 1, BUSY)

    def segment_mac_on_a(name, argv):
        return argv[:1] + ["--segment-mac"] + argv[1:] if name == "A" else argv

    with harness.TwoServers(mode="echo", server_extra=["--precopy", "on"], argv_hook=segment_mac_on_a) as t:
        sock, sent = busy_echo(t, data)
        result = t.migrate_raw("A", "B")
        line = result.stdout.strip()
        log("failed move: exit %d: %s" % (result.returncode, line))
        check(result.returncode != 0 and line.startswith("error moved 0 of 1") and "segment MAC" in line,
              "failed move: roamctl said %r (exit %d), expected an error naming the segment MAC" % (
                  line, result.returncode))
        read_back_echo(sock, sent, data, "failed move")
        a, b = t.status("A"), t.status("B")
        log("A: sessions_export_failed %s, precopy sent %s; B: received %s, discarded %s, held %s, refused %s" % (
            a["sessions_export_failed"], a["precopy_bytes_sent"], b["precopy_bytes_received"],
            b["precopy_bytes_discarded"], b["precopy_bytes_held"], b["imports_refused"]))
        check(a["sessions_export_failed"] == 1, "failed move: A counted %d failed sessions" % a["sessions_export_failed"])
        check(b["precopy_bytes_received"] > 0, "failed move: nothing was pre-copied before the refusal")
        check(b["precopy_bytes_discarded"] > 0, "failed move: B discarded no pre-copied byte")
        check(b["precopy_bytes_held"] == 0, "failed move: B still holds %d pre-copied bytes" % b["precopy_bytes_held"])
        check(b["sessions"] == 0 and b["sessions_imported"] == 0, "failed move: B holds %d sessions" % b["sessions"])
        t.stop_all()


def target_without_precopy():
    data = harness.pseudo_random_bytes(SEED + 2, BUSY)

    def precopy_off_on_b(name, argv):
        return argv[:1] + ["--precopy", "off"] + argv[1:] if name == "B" else argv

    with harness.TwoServers(mode="echo", argv_hook=precopy_off_on_b) as t:
        sock, sent = busy_echo(t, data)
        t.migrate("A", "B", expect_moved=1)
        log("move to a target without pre-copy: %s" % t.last_summary)
        read_back_echo(sock, sent, data, "no-precopy target")
        a, b = t.status("A"), t.status("B")
        log("A: precopy_skipped_target %s, rounds %s, last_move_snapshot_bytes %s; B: precopy received %s" % (
            a["precopy_skipped_target"], a["precopy_rounds"], a["last_move_snapshot_bytes"],
            b["precopy_bytes_received"]))
        check(a["precopy_skipped_target"] == 1, "no-precopy target: A counted %d skipped moves, expected 1" %
              a["precopy_skipped_target"])
        check(a["precopy_rounds"] == 0 and a["last_move_precopy_bytes"] == 0,
              "no-precopy target: A pre-copied anyway (%d rounds)" % a["precopy_rounds"])
        check(b["precopy_bytes_received"] == 0, "no-precopy target: B received %d pre-copied bytes" %
              b["precopy_bytes_received"])
        check(b["sessions_imported"] == 1, "no-precopy target: B imported %d sessions" % b["sessions_imported"])
        t.stop_all()


def held_download():
    directory = tempfile.mkdtemp(prefix="roam-it-precopy-files-")
    try:
        size = 64 * MIB
        data = harness.pseudo_random_bytes(SEED + 3, size)
        with open(os.path.join(directory, "big.bin"), "wb") as f:
            f.write(data)
        with harness.TwoServers(mode="files", mode_args=["--root", directory],
                                server_extra=["--precopy", "on"]) as t:
            sock = t.connect()
            download = harness.MarkedReader(sock, [16 * MIB], size)
            sock.sendall(b"big.bin\n")
            reader = harness.Worker(download.run, name="download")
            reader.start()
            if not download.wait_for_mark(0, reader):
                reader.finish()
                raise TestFailure("held download: ended after %d bytes, before the move" % download.received)
            download.release(0)
            t.migrate("A", "B", expect_moved=1)
            log("held download: %s" % t.last_summary)
            reader.finish(harness.IO_TIMEOUT * 2)
            sock.close()
            check(download.eof and download.received == size,
                  "held download: received %d bytes, expected %d" % (download.received, size))
            check(download.digest.hexdigest() == harness.sha256(data), "held download: the bytes differ from the file")
            a, b = t.status("A"), t.status("B")
            log("A: precopy_rounds %s (held %s), relied %s, last_move_snapshot_bytes %s, frozen %s us" % (
                a["precopy_rounds"], a["precopy_held_rounds"], a["precopy_bytes_relied"],
                a["last_move_snapshot_bytes"], a["last_move_frozen_us"]))
            # Relied-on bytes may be 0: while the output was held, TCP may have sent and had
            # acknowledged every queued byte, so the freeze had nothing to leave out.
            check(a["precopy_rounds"] >= 1 and a["precopy_bytes_sent"] > 0, "held download: A pre-copied nothing")
            check(a["last_move_snapshot_bytes"] == 0,
                  "held download: the freeze carried %d stream bytes; the held round should leave none" %
                  a["last_move_snapshot_bytes"])
            check(b["precopy_mismatches"] == 0, "held download: B counted %d mismatches" % b["precopy_mismatches"])
            check(b["sessions_imported"] == 1, "held download: B imported %d sessions" % b["sessions_imported"])
            t.stop_all()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main():
    held_download()
    busy_move()
    failed_after_precopy()
    target_without_precopy()


if __name__ == "__main__":
    harness.run(main)
