#!/usr/bin/env python3
"""roam-server --checkpoint-seed pushes sealed checkpoints of a files download to its client.

Topology (harness.TwoServers, mode files): both servers share one checkpoint seed (a
32-byte secret from `roamctl genkey`) and push every 200 ms; the client serves its own
--metrics. A kernel client downloads a seeded file (64 MiB x ROAMSTACK_TEST_SCALE) through
the forward, reading at a paced rate so the download lasts a few seconds, and the session
moves A -> B once midway (the checkpoints follow the session: B pushes after the move).

Asserted: the bytes are the file (length and SHA-256) with a clean EOF; A pushed at least
one checkpoint before the move and B at least one after it; the client received them and
holds at most one per connection (the latest generation), none malformed, and none of B's
was taken for older than A's. Nothing here
presents a checkpoint (RESUME from roam-client is not wired yet: docs/PROTOCOL.md 14.7).
"""
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402

MIB = 1024 * 1024
# Not below 1: the kill and the move need the download still running (room for the
# client's read-ahead in the buffers); a larger scale makes it longer.
SCALE = max(1.0, float(os.environ.get("ROAMSTACK_TEST_SCALE", "1")))
SIZE = int(64 * MIB * SCALE)
RATE = 16 * MIB  # bytes/s: about 4 s at scale 1 (the client buffers up to ~10 MiB ahead)
NAME = "ckpt.bin"


metric = harness.metric_value
wait_until = harness.wait_until


def main():
    directory = tempfile.mkdtemp(prefix="roam-it-ckpt-")
    try:
        rng = random.Random(0xC4EC)
        data = rng.randbytes(SIZE)
        with open(os.path.join(directory, NAME), "wb") as f:
            f.write(data)
        want = hashlib.sha256(data).hexdigest()
        seed = os.path.join(directory, "checkpoint.seed")
        subprocess.run([harness.ROAMCTL, "genkey", "--out", seed], check=True, capture_output=True)
        metrics = "127.0.0.1:%d" % harness.free_tcp_port()
        extra = ["--checkpoint-seed", seed, "--checkpoint-interval-ms", "200"]
        with harness.TwoServers(mode="files", mode_args=["--root", directory], server_extra=extra,
                                client_extra=["--metrics", metrics]) as t:
            sock = t.connect()
            download = harness.MarkedReader(sock, [SIZE // 2], SIZE, max_rate=RATE)
            sock.sendall((NAME + "\n").encode())
            reader = harness.Worker(download.run, name="download")
            reader.start()
            wait_until("A's first checkpoint", lambda: t.status("A")["checkpoints_pushed"] >= 1)
            check(download.wait_for_mark(0, reader), "the download ended before its middle")
            download.release(0)
            pushed_a = t.status("A")["checkpoints_pushed"]
            t.migrate("A", "B", expect_moved=1)
            wait_until("B's first checkpoint", lambda: t.status("B")["checkpoints_pushed"] >= 1)
            reader.finish(harness.IO_TIMEOUT * 2)
            sock.close()
            check(download.eof, "no EOF seen")
            check(download.received == SIZE, "received %d bytes, expected %d" % (download.received, SIZE))
            check(download.digest.hexdigest() == want, "wrong bytes (sha256 %s)" % download.digest.hexdigest())
            received = metric(metrics, "roamstack_checkpoint_checkpoints_received")
            kept = metric(metrics, "roamstack_checkpoint_checkpoints_kept")
            malformed = metric(metrics, "roamstack_checkpoint_checkpoints_malformed")
            ignored = metric(metrics, "roamstack_checkpoint_checkpoints_ignored")
            held = metric(metrics, "roamstack_checkpoint_checkpoints_held")
            status_b = t.status("B")
            log("INFO checkpoints pushed: A %d before the move, B %d; client received %s, kept %s, held %s"
                % (pushed_a, status_b["checkpoints_pushed"], received, kept, held))
            check(received is not None and received >= 2, "the client received %s checkpoints" % received)
            check(kept is not None and kept >= 1, "the client kept %s checkpoints" % kept)
            check(malformed == 0, "malformed checkpoints at the client: %s" % malformed)
            # B's generations continue above A's (they are clock-based): none is taken for an old one.
            check(ignored == 0, "the client ignored %s checkpoints as older than the one it held" % ignored)
            check(held is not None and held <= 1, "the client holds %s checkpoints for one connection" % held)
            check(status_b["resumes"] == 0, "a RESUME reached B")
            t.stop_all()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
