#!/usr/bin/env python3
"""A checkpoint the next server cannot open is refused, counted, and moves nothing.

Topology (harness.TwoServers, mode files): A and B push checkpoints but under DIFFERENT
seeds, so B cannot open A's (to B it is a forgery: the AEAD fails). The client runs with
--resume-to B, --resume-after-ms 1000 and --dead-peer 6. A kernel client downloads a
seeded file at a paced rate; A is killed with SIGKILL mid-download.

Asserted: B refuses the RESUME as forged (resume_refused_forged 1, every other refusal 0,
resumes_done 0) and holds no session; the client counts the refusal and no resume done;
its connection was not moved (it stays on the dead path until the dead-peer bound resets
it: the kernel client sees the download end short, never a wrong byte).
"""
import hashlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import check, log  # noqa: E402

MIB = 1024 * 1024
SIZE = 48 * MIB
RATE = 8 * MIB
NAME = "refused.bin"


metric = harness.metric_value
wait_until = harness.wait_until


class Reader:
    """Reads at a paced rate until EOF or an error; keeps the bytes' digest."""

    def __init__(self, sock):
        self.sock = sock
        self.received = 0
        self.digest = hashlib.sha256()
        self.ended = None

    def run(self):
        started = time.monotonic()
        try:
            while True:
                ahead = self.received / RATE - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                chunk = self.sock.recv(64 << 10)
                if not chunk:
                    self.ended = "eof"
                    return
                self.digest.update(chunk)
                self.received += len(chunk)
        except (OSError, socket.timeout) as e:
            self.ended = type(e).__name__


def main():
    directory = tempfile.mkdtemp(prefix="roam-it-refused-")
    try:
        data = random.Random(0x2EF).randbytes(SIZE)
        with open(os.path.join(directory, NAME), "wb") as f:
            f.write(data)
        seeds = {}
        for name in ("A", "B"):
            seeds[name] = os.path.join(directory, "seed-%s" % name)
            subprocess.run([harness.ROAMCTL, "genkey", "--out", seeds[name]], check=True, capture_output=True)
        metrics = "127.0.0.1:%d" % harness.free_tcp_port()

        def hook(name, argv):
            if name in seeds:
                return argv[:1] + ["--checkpoint-seed", seeds[name], "--checkpoint-interval-ms", "200"] + argv[1:]
            return argv[:1] + ["--resume-to", harness.SERVER_B_ADDR, "--resume-after-ms", "1000", "--dead-peer", "6",
                               "--metrics", metrics] + argv[1:]

        with harness.TwoServers(mode="files", mode_args=["--root", directory], argv_hook=hook) as t:
            sock = t.connect()
            reader = Reader(sock)
            sock.sendall((NAME + "\n").encode())
            thread = threading.Thread(target=reader.run, name="download", daemon=True)
            thread.start()
            wait_until("a checkpoint at the client",
                       lambda: (metric(metrics, "roamstack_checkpoint_checkpoints_held") or 0) >= 1)
            wait_until("8 MiB received", lambda: reader.received >= 8 * MIB)
            victim = t.servers.pop("A")
            victim.stop(signal.SIGKILL, check_exit=False)
            log("killed A (SIGKILL) at %.1f MiB received" % (reader.received / MIB))
            wait_until("B's refusal", lambda: t.status("B")["resume_refused_forged"] >= 1, timeout=harness.IO_TIMEOUT)
            wait_until("the client's refusal count",
                       lambda: (metric(metrics, "roamstack_checkpoint_resumes_refused") or 0) >= 1)
            status_b = t.status("B")
            refusals = {k: v for k, v in status_b.items() if k.startswith("resume_refused_") and v}
            log("INFO B: %s, sessions %d, resumes_done %d" % (refusals, status_b["sessions"], status_b["resumes_done"]))
            check(refusals == {"resume_refused_forged": 1}, "B's refusals: %s" % refusals)
            check(status_b["resumes_done"] == 0, "B resumed %d connections" % status_b["resumes_done"])
            check(status_b["sessions"] == 0, "B holds %d sessions" % status_b["sessions"])
            check(metric(metrics, "roamstack_checkpoint_resumes_done") == 0, "the client counts a resume done")
            thread.join(harness.IO_TIMEOUT)
            check(not thread.is_alive(), "the download did not end after the dead-peer bound")
            log("INFO the download ended (%s) after %d of %d bytes" % (reader.ended, reader.received, SIZE))
            check(reader.received < SIZE, "the whole file arrived with its server dead and no resume")
            check(reader.digest.hexdigest() == hashlib.sha256(data[:reader.received]).hexdigest(),
                  "the bytes received are not the file's prefix")
            sock.close()
            t.stop_all()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
