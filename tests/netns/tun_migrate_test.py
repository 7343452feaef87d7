#!/usr/bin/env python3
"""Tier-3 migration test: a live download moves between two servers on real TUN devices
in separate network namespaces, with kernel routing through the lab's router.

  c   roam-client on rtun0 (198.18.11.2), forward 127.0.0.1:9000 -> 198.18.12.2:7000
  s   roam-server files on rtun0 (198.18.12.2), control on its kernel address 198.18.2.1
  s2  roam-server files on rtun0 (198.18.13.2), control on 198.18.3.1
  r   routes between all of them; roamctl runs here

A 128 MiB file is downloaded through the forward while the server moves s -> s2 -> s -> s2;
the bytes must arrive exactly, the kernel client must see a clean EOF, every move must
report "ok moved 1 of 1", and every roam process must exit 0 on SIGTERM. Exit 0 passed,
1 failed, 77 skipped (not root, or no `ip netns`). The lab is deleted on every exit path.
"""
import hashlib
import os
import random
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import ROAM_CLIENT, ROAM_SERVER, ROAMCTL, Failure, log  # noqa: E402
import netns_lab  # noqa: E402

# Large enough that the stream cannot end before move 3: with TUN offloads the path is fast
# and ~16 MiB sit in buffers ahead of the reader (kernel sockets, both lwIP windows), so a
# server that queued its last byte (FIN) at 64 MiB could no longer move (seen under ASan).
SIZE = 128 << 20
CONTROL = {"s": "198.18.2.1:7100", "s2": "198.18.3.1:7100"}


def main(lab):
    workdir = lab.workdir
    data = random.Random(7).randbytes(SIZE)
    with open(os.path.join(workdir, "movie.bin"), "wb") as f:
        f.write(data)
    expected = hashlib.sha256(data).hexdigest()
    del data

    start, wait_log, run_in = lab.start, lab.wait_log, lab.run_in

    for role, addr in (("s", "198.18.12.2"), ("s2", "198.18.13.2")):
        start("server_" + role, role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", addr, "--control", CONTROL[role]]
              + lab.pool().server_args(role) + ["files", "--root", workdir])
        wait_log("server_" + role, "interface up")
    start("client", "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", "198.18.11.2",
                          "-L", "127.0.0.1:9000:198.18.12.2:7000"])
    wait_log("client", "interface up")
    log("ok   - two servers (s, s2) and a client up on TUN devices")

    # The kernel client runs inside namespace c: a small python reader.
    reader = subprocess.Popen(
        [netns_lab.TOPOLOGY, "exec", lab.name, "c", sys.executable, "-c", """
import hashlib, socket, sys, time
s = socket.create_connection(("127.0.0.1", 9000), timeout=60)
s.sendall(b"movie.bin\\n")
h = hashlib.sha256(); n = 0
start = time.monotonic()
while True:
    d = s.recv(1 << 20)
    if not d: break
    h.update(d); n += len(d)
    # Read at most ~32 MiB/s: the moves (each a roamctl in another namespace) must find
    # the server still sending, however fast the path is on an idle machine.
    ahead = n / (32 << 20) - (time.monotonic() - start)
    if ahead > 0: time.sleep(ahead)
    if n % (4 << 20) < len(d): print("progress", n, flush=True)
print("done", n, h.hexdigest(), flush=True)
"""], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    progress = []
    lines = []

    def pump():
        for line in reader.stdout:
            lines.append(line.strip())
            if line.startswith("progress"):
                progress.append(int(line.split()[1]))

    threading.Thread(target=pump, daemon=True).start()
    moves = [("s", "s2"), ("s2", "s"), ("s", "s2")]
    for i, (source, target) in enumerate(moves):
        while (not progress or progress[-1] < (i + 1) * SIZE // 5) and reader.poll() is None:
            time.sleep(0.01)
        if reader.poll() is not None:
            raise Failure("download ended before move %d: %s" % (i + 1, lines[-5:]))
        # A session that arrived by the previous move stays parked (and cannot move on) until
        # the client has followed it; with TUN offloads the stream is fast enough for the
        # next threshold to be passed already, so wait for the follow, not only for bytes.
        deadline = time.monotonic() + 30
        while open(os.path.join(workdir, "client.log")).read().count("moved to") < i and time.monotonic() < deadline:
            time.sleep(0.01)
        out = run_in("r", [ROAMCTL, "migrate", "--from", CONTROL[source], "--to", CONTROL[target]], timeout=60)
        if out.returncode != 0 or not out.stdout.startswith("ok moved 1 of 1"):
            raise Failure("move %s -> %s: %s %s" % (source, target, out.stdout.strip(), out.stderr.strip()))
        log("ok   - move %d %s -> %s at %d MiB: %s" % (i + 1, source, target, progress[-1] >> 20, out.stdout.strip()))
    reader.wait(120)
    done = [l for l in lines if l.startswith("done")]
    if reader.returncode != 0 or not done:
        raise Failure("kernel reader failed (status %s): %s" % (reader.returncode, lines[-5:]))
    _, count, digest = done[0].split()
    if int(count) != SIZE or digest != expected:
        raise Failure("received %s bytes, sha256 %s; expected %d, %s" % (count, digest, SIZE, expected))
    log("ok   - %d MiB received byte-exact across 3 moves, clean EOF" % (SIZE >> 20))
    status = run_in("r", [ROAMCTL, "status", "--server", CONTROL["s2"]])
    log("ok   - s2 status: " + status.stdout.strip())

    lab.stop_cleanly(["client", "server_s", "server_s2"])
    log("ok   - every roam process exited 0 on SIGTERM")


if __name__ == "__main__":
    netns_lab.run("tm", main)
