#!/usr/bin/env python3
"""Kill -9 of a files server mid-download: the client resumes on the second server from its checkpoint.

Topology (harness.TwoServers, mode files): A and B serve the same directory and share one
checkpoint seed (`roamctl genkey`); A pushes a sealed checkpoint of the session every 200
ms. The client runs with --resume-to B and --resume-after-ms 1500. A kernel client
downloads a seeded file (48 MiB x ROAMSTACK_TEST_SCALE) through the forward at a paced
rate; once a third has arrived and A has pushed checkpoints, A is killed with SIGKILL (no
export, no ACM). The client notices A's silence, sends B a RESUME with its latest
checkpoint and its sequence view; B rebuilds the connection (the file offset from the
client's rcv_nxt) and the download goes on from B.

Asserted: the bytes received are the file (length and SHA-256) with a clean EOF and no
reset; B counts one resume done and no refusal; the client counts one resume sent and
done. The takeover time (from the kill until B counts the resume, polled) is printed, not
asserted.
"""
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402

MIB = 1024 * 1024
# Not below 1: the kill and the move need the download still running (room for the
# client's read-ahead in the buffers); a larger scale makes it longer.
SCALE = max(1.0, float(os.environ.get("ROAMSTACK_TEST_SCALE", "1")))
SIZE = int(48 * MIB * SCALE)
RATE = 8 * MIB  # bytes/s: about 6 s at scale 1 plus the takeover; the client buffers ~10 MiB ahead
NAME = "resume.bin"


metric = harness.metric_value
wait_until = harness.wait_until


def main():
    directory = tempfile.mkdtemp(prefix="roam-it-resume-")
    try:
        data = random.Random(0x4E5E).randbytes(SIZE)
        with open(os.path.join(directory, NAME), "wb") as f:
            f.write(data)
        want = hashlib.sha256(data).hexdigest()
        seed = os.path.join(directory, "checkpoint.seed")
        subprocess.run([harness.ROAMCTL, "genkey", "--out", seed], check=True, capture_output=True)
        metrics = "127.0.0.1:%d" % harness.free_tcp_port()
        server_extra = ["--checkpoint-seed", seed, "--checkpoint-interval-ms", "200"]
        client_extra = ["--resume-to", harness.SERVER_B_ADDR, "--resume-after-ms", "1500", "--metrics", metrics]
        with harness.TwoServers(mode="files", mode_args=["--root", directory], server_extra=server_extra,
                                client_extra=client_extra) as t:
            sock = t.connect()
            download = harness.MarkedReader(sock, [SIZE // 3], SIZE, max_rate=RATE)
            sock.sendall((NAME + "\n").encode())
            reader = harness.Worker(download.run, name="download")
            reader.start()
            wait_until("A's checkpoints", lambda: t.status("A")["checkpoints_pushed"] >= 2)
            check(download.wait_for_mark(0, reader), "the download ended before a third of it")
            wait_until("the client to hold a checkpoint",
                       lambda: (metric(metrics, "roamstack_checkpoint_checkpoints_held") or 0) >= 1)
            at = download.received
            killed = time.monotonic()
            victim = t.servers.pop("A")
            victim.stop(signal.SIGKILL, check_exit=False)
            log("killed A (SIGKILL) at %.1f MiB received" % (at / MIB))
            download.release(0)
            wait_until("B to resume the connection", lambda: t.status("B")["resumes_done"] >= 1,
                       timeout=harness.IO_TIMEOUT)
            gap = time.monotonic() - killed
            reader.finish(harness.IO_TIMEOUT * 2)
            sock.close()
            log("received %d bytes, sha256 %s" % (download.received, download.digest.hexdigest()))
            check(download.eof, "no EOF seen")
            check(download.received == SIZE, "received %d bytes, expected %d" % (download.received, SIZE))
            check(download.digest.hexdigest() == want, "wrong bytes (sha256 %s, expected %s)"
                  % (download.digest.hexdigest(), want))
            status_b = t.status("B")
            refused_b = {k: v for k, v in status_b.items() if k.startswith("resume_refused_") and v}
            sent = metric(metrics, "roamstack_checkpoint_resumes_sent")
            done = metric(metrics, "roamstack_checkpoint_resumes_done")
            log("INFO takeover: B resumed the connection %.2f s after the kill (resume-after 1.5 s); B resumes_done %d, "
                "client resumes sent %s done %s" % (gap, status_b["resumes_done"], sent, done))
            check(status_b["resumes_done"] == 1, "B resumed %d connections" % status_b["resumes_done"])
            check(not refused_b, "B refused resumes: %s" % refused_b)
            check(done == 1, "the client counts %s resumes done" % done)
            t.stop_all()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
