"""The per-segment MAC's cost with TUN offloads on, for tools/bench/acm_bench.py
(segment_mac_ratio_offload). Needs root: a lab of namespaces (tools/netns/topology, TUN
devices with IFF_VNET_HDR, checksum offload and TSO), deleted on every exit path.

  c  a kernel TCP upload -> roam-client (TUN rtun0, 198.18.11.2) -> kernel routing via r
  s  -> roam-server discard (TUN rtun0, 198.18.12.2)

Three fresh pairs measured the same way (connect, 1 s for the control channel's
registration and slow start, one phase of `seconds`): without MAC, with --segment-mac on
both ends, without again. The MAC pair's client must have cut multi-MSS segments into
signed pieces (its exit log), else the figure would not be the offload path's.
  segment_mac_ratio_offload = with / the mean of the two without
"""
import os
import re
import shutil
import subprocess
import sys

from bench_util import stop_processes

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
TOPOLOGY = os.path.join(ROOT, "tools", "netns", "topology")
CLIENT_ADDR, SERVER_ADDR = "198.18.11.2", "198.18.12.2"

# Inside c: connects through the forward, writes as fast as it goes, and prints the rate
# (Gbit/s) of one phase after the warm-up.
UPLOAD = r"""
import os, socket, sys, threading, time
warm, seconds = float(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
chunk = os.urandom(256 * 1024)
sent = [0]
stop = threading.Event()
def run():
    while not stop.is_set():
        sent[0] += s.send(chunk)
threading.Thread(target=run, daemon=True).start()
time.sleep(warm)
before, started = sent[0], time.monotonic()
time.sleep(seconds)
print("%.6f" % ((sent[0] - before) * 8 / (time.monotonic() - started) / 1e9), flush=True)
stop.set()
"""


def _note(*args):
    print("[acm]", *args, file=sys.stderr, flush=True)


def _wait_log(path, needle, proc, timeout=15):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(path) as f:
            if needle in f.read():
                return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    with open(path) as f:
        raise RuntimeError("%s never logged %r: %s" % (path, needle, f.read()[-1000:]))


def _pair(lab, workdir, name, extra, seconds, server, client):
    logs = {role: os.path.join(workdir, "%s-%s.log" % (name, role)) for role in ("server", "client")}
    procs = []
    try:
        with open(logs["server"], "w") as out:
            procs.append(subprocess.Popen([TOPOLOGY, "exec", lab, "s", server, "--link", "tun:rtun0", "--addr",
                                           SERVER_ADDR] + extra + ["discard"], stdout=out, stderr=subprocess.STDOUT))
        _wait_log(logs["server"], "interface up", procs[0])
        with open(logs["client"], "w") as out:
            procs.append(subprocess.Popen([TOPOLOGY, "exec", lab, "c", client, "--link", "tun:rtun0", "--addr",
                                           CLIENT_ADDR, "-L", "127.0.0.1:9000:%s:7000" % SERVER_ADDR] + extra,
                                          stdout=out, stderr=subprocess.STDOUT))
        _wait_log(logs["client"], "[app] forwarding", procs[1])
        for role in ("server", "client"):
            with open(logs[role]) as f:
                if "offloads checksum+tso" not in f.read():
                    raise RuntimeError("%s pair: the %s's TUN has no offloads (%s)" % (name, role, logs[role]))
        upload = subprocess.run([TOPOLOGY, "exec", lab, "c", sys.executable, "-c", UPLOAD, "9000", "1.0",
                                 str(seconds)], capture_output=True, text=True, timeout=seconds + 60)
        if upload.returncode != 0:
            raise RuntimeError("%s pair: upload failed: %s" % (name, upload.stderr[-500:]))
        rate = float(upload.stdout.strip().splitlines()[-1])
    finally:
        stop_processes(procs, 20)
    with open(logs["client"]) as f:
        return rate, f.read()


def measure(seconds, workdir, server, client):
    """{"segment_mac_ratio_offload": ..., ...}, or {} (with a note) when not root."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        _note("segment_mac_ratio_offload skipped: needs root for the TUN lab")
        return {}
    lab = "ab%04d" % (os.getpid() % 10000)
    up = subprocess.run([TOPOLOGY, "up", lab], capture_output=True, text=True)
    try:
        if up.returncode != 0:
            raise RuntimeError("topology up: " + up.stderr.strip())
        plain_before, _ = _pair(lab, workdir, "tun-plain-before", [], seconds, server, client)
        with_mac, log = _pair(lab, workdir, "tun-mac", ["--segment-mac"], seconds, server, client)
        plain_after, _ = _pair(lab, workdir, "tun-plain-after", [], seconds, server, client)
    finally:
        subprocess.run([TOPOLOGY, "down", lab], capture_output=True)
    signed = re.search(r"segment MAC: connections (\d+), signed (\d+)", log)
    cut = re.search(r"cut here for the segment MAC (\d+) into (\d+)", log)
    if signed is None or int(signed.group(2)) == 0 or cut is None or int(cut.group(1)) == 0:
        raise RuntimeError("the TUN MAC pair signed no cut segment (%s)" % workdir)
    reference = (plain_before + plain_after) / 2
    _note("TUN offloads: upload without MAC %.3f, with --segment-mac %.3f, without %.3f Gbit/s "
          "(client signed %s; cut %s segments into %s pieces)" % (plain_before, with_mac, plain_after,
                                                                signed.group(2), cut.group(1), cut.group(2)))
    return {
        "upload_gbps_segment_mac_offload": round(with_mac, 3),
        "upload_gbps_offload_reference": round(reference, 3),
        "segment_mac_ratio_offload": round(with_mac / reference, 3),
    }
