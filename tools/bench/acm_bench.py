#!/usr/bin/env python3
"""Control-channel costs, and a transfer under a flood of forged ACMs, measured in one run.

In-process, one core (tools/bench/acm_bench.cpp): handshake_ms (a Noise XX handshake, both
ends), acm_verify_per_s (ACMs sealed, opened, decoded and checked by the AcmFilter),
forged_rejected_per_s (ACM-sized frames with a wrong tag rejected by a channel) and the
reference aead_open_per_s (libsodium's ChaCha20-Poly1305 open alone, same size).

Over the links (UDP on loopback, no privilege): roam-server A (discard) and a roam-client
whose forward carries one kernel TCP upload to A. Three phases of --seconds each: upload
alone, upload while acm_flood (tools/bench/acm_flood.cpp: prebuilt segments, sendmmsg)
sends forged ACM segments (spoofed from A's control-channel endpoint to the client's
channel port, random sequence numbers: an off-path attacker) to the client's link, upload
alone again; then a fourth phase with the same flooder aimed at a UDP socket nobody reads
(the flooder's own CPU, which shares the cores with the upload, without roam-client
receiving anything). --flood-rate PPS paces both floods (default 0: as fast as it goes).
--flooder-cpu N puts the flooder on CPU N and everything else of the lab on the other CPUs,
as for an attacker on another host: the ratio then shows roam-client's own cost, not the
flooder's. On loopback the kernel receives a datagram in its sender's context, so the
flood's receive half runs on CPU N too; --flood-rx lab (root) moves it onto the lab's CPUs
(a fresh network namespace whose lo steers received packets there, RPS), as a NIC's
interrupts on the lab's cores would.
  throughput_ratio_under_flood = flood phase / mean of the two phases without flood
  throughput_ratio_flooder_elsewhere = fourth phase / the same mean (the flooder's cost alone)
  throughput_ratio_flood_over_flooder_elsewhere = flood phase / fourth phase (roam-client's
                                 cost of receiving and dropping the forgeries)
  redirects_by_forgery         connections the client moved (no genuine move happens: 0)
  flood_pps                    forged datagrams per second the flooder got out
  flood_rate_asked             the --flood-rate asked (0: as fast as it goes)
  flooder_cpu, flood_rx        the placement asked (null and "sender": none)
Then three fresh pairs run the same upload (1 s warm-up, one phase): without MAC, with
--segment-mac on both ends, without again:
  segment_mac_throughput_ratio = with per-segment MACs / the mean of the two without
Then the control-port hijacks of issue 11 against a lab of three servers (acm_hijack.py):
  hijack_attempts_succeeded = attempts that moved, broke or read anything (must be 0)
As root, the same three pairs on TUN devices with offloads on (acm_offload.py):
  segment_mac_ratio_offload = with per-segment MACs / the mean of the two without
The last line of stdout is one JSON object.
"""
import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_util import free_port, stop_processes  # noqa: E402
import acm_hijack  # noqa: E402
import acm_offload  # noqa: E402

ROAM_SERVER = os.environ.get("ROAM_SERVER", "build/apps/roam-server")
ROAM_CLIENT = os.environ.get("ROAM_CLIENT", "build/apps/roam-client")
ACM_BENCH = os.environ.get("ACM_BENCH", os.path.join(os.path.dirname(ROAM_SERVER), "..", "tools", "bench",
                                                     "acm_bench"))
ACM_FLOOD = os.environ.get("ACM_FLOOD", os.path.join(os.path.dirname(ROAM_SERVER), "..", "tools", "bench",
                                                     "acm_flood"))
CLIENT_ADDR, A_ADDR = "198.18.11.2", "198.18.12.2"


def note(*args):
    print("[acm]", *args, file=sys.stderr, flush=True)


def wait_for(what, predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for " + what)
        time.sleep(0.05)


class Lab:
    """roam-server A (discard) and a roam-client with one forward to it, on UDP links."""

    def __init__(self, workdir, name, extra):
        self.udp = {n: free_port(socket.SOCK_DGRAM) for n in ("client", "a")}
        self.forward = free_port(socket.SOCK_STREAM)
        self.path = os.path.join(workdir, name + "-client.log")
        server_log = open(os.path.join(workdir, name + "-server.log"), "w")
        client_log = open(self.path, "w")
        self.procs = [
            subprocess.Popen([ROAM_SERVER, "--link", "udp:127.0.0.1:%d" % self.udp["a"], "--addr", A_ADDR, "--route",
                              "198.18.11.0/24=127.0.0.1:%d" % self.udp["client"]] + extra + ["discard"],
                             stdout=server_log, stderr=subprocess.STDOUT),
            subprocess.Popen([ROAM_CLIENT, "--link", "udp:127.0.0.1:%d" % self.udp["client"], "--addr", CLIENT_ADDR,
                              "--route", "198.18.12.0/24=127.0.0.1:%d" % self.udp["a"],
                              "-L", "127.0.0.1:%d:%s:7000" % (self.forward, A_ADDR),
                              # The flood comes from its own socket, not A's endpoint: let it
                              # reach the channel (an on-path attacker could send from A's).
                              "--udp-allow", "127.0.0.1"] + extra,
                             stdout=client_log, stderr=subprocess.STDOUT),
        ]

    def client_log(self):
        with open(self.path) as f:
            return f.read()

    def stop(self):
        stop_processes(self.procs, 20)


class Upload:
    """One kernel TCP connection through the forward, written as fast as it goes."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sent = 0
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        chunk = os.urandom(256 * 1024)
        try:
            while not self.stop.is_set():
                self.sent += self.sock.send(chunk)
        except OSError as e:
            self.error = e

    def rate(self, seconds):
        before, started = self.sent, time.monotonic()
        time.sleep(seconds)
        if self.error is not None:
            raise RuntimeError("upload failed: %s" % self.error)
        return (self.sent - before) * 8 / (time.monotonic() - started) / 1e9

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.sock.close()


IN_RX_NAMESPACE = "ACM_BENCH_IN_RX_NAMESPACE"


def reexec_in_rx_namespace(lab_cpus, parser):
    """Runs this bench again in a fresh network and mount namespace (gone when it exits),
    whose loopback steers every received packet to lab_cpus (RPS): the kernel's receive half
    of the flood then runs on the lab's CPUs, not in the flooder's send call. Root only; the
    root namespace's lo is not touched."""
    if os.geteuid() != 0:
        parser.error("--flood-rx lab needs root (a network namespace)")
    mask = "%x" % sum(1 << cpu for cpu in lab_cpus)
    setup = ("mount -t sysfs sysfs /sys && ip link set lo up && "
             "echo %s > /sys/class/net/lo/queues/rx-0/rps_cpus && exec \"$@\"" % mask)
    env = dict(os.environ, **{IN_RX_NAMESPACE: "1"})
    note("re-running in a fresh network namespace, lo's receive steered to CPU mask %s" % mask)
    sys.stdout.flush()
    os.execvpe("unshare", ["unshare", "--net", "--mount", "sh", "-c", setup, "sh", sys.executable,
                           os.path.abspath(__file__)] + sys.argv[1:], env)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each upload phase (default 5)")
    parser.add_argument("--handshakes", type=int, default=300, help="handshakes timed in-process (default 300)")
    parser.add_argument("--kernel-filter", choices=("on", "off"), default="on",
                        help="roam-client's --kernel-filter in the flood lab (default on, its default)")
    parser.add_argument("--flood-rate", type=float, default=0,
                        help="forged datagrams per second in both flood phases (default 0: as fast as it goes)")
    parser.add_argument("--flooder-cpu", type=int, default=None, metavar="N",
                        help="run the flooder on CPU N and the rest of the lab on the other CPUs "
                             "(default: no placement, all share every CPU)")
    parser.add_argument("--flood-rx", choices=("sender", "lab"), default="sender",
                        help="where the kernel receives the flood's datagrams: 'sender' (loopback's "
                             "way: the flooder's CPU) or 'lab' (root; needs --flooder-cpu: a fresh network "
                             "namespace whose lo steers them to the lab's CPUs)")
    args = parser.parse_args()

    if args.flood_rate < 0:
        parser.error("--flood-rate must be 0 or positive")
    flooder_prefix = []
    if args.flooder_cpu is not None:
        cpus = os.sched_getaffinity(0)
        if args.flooder_cpu not in cpus or len(cpus) < 2:
            parser.error("--flooder-cpu %d: not one of this process's CPUs %s, or no other CPU is left for the lab"
                         % (args.flooder_cpu, sorted(cpus)))
        lab_cpus = cpus - {args.flooder_cpu}
        if args.flood_rx == "lab" and os.environ.get(IN_RX_NAMESPACE) != "1":
            reexec_in_rx_namespace(lab_cpus, parser)
        # Before any thread or child starts: all of them inherit the lab's CPUs.
        os.sched_setaffinity(0, lab_cpus)
        flooder_prefix = ["taskset", "-c", str(args.flooder_cpu)]
        note("flooder on CPU %d, the lab on CPUs %s, the flood received on the %s's" % (
            args.flooder_cpu, ",".join(map(str, sorted(lab_cpus))), args.flood_rx))
    elif args.flood_rx == "lab":
        parser.error("--flood-rx lab needs --flooder-cpu (with all on every CPU there is nothing to steer)")
    if not os.access(ACM_FLOOD, os.X_OK):
        sys.exit("acm_bench.py: no flooder at %s (build the acm_flood target, or set ACM_FLOOD)" % ACM_FLOOD)

    def start_flood(link_port, channel_port):
        return subprocess.Popen(flooder_prefix + [ACM_FLOOD, "--link", "127.0.0.1:%d" % link_port, "--src", A_ADDR, "--dst",
                                 CLIENT_ADDR, "--dport", str(channel_port), "--count", "100000000", "--seconds",
                                 str(args.seconds), "--rate", str(args.flood_rate)], stdout=subprocess.PIPE,
                                text=True)

    note("in-process costs (%s)" % ACM_BENCH)
    cpu = json.loads(subprocess.run([ACM_BENCH, "--handshakes", str(args.handshakes)], check=True,
                                    capture_output=True, text=True).stdout.strip().splitlines()[-1])
    note(json.dumps(cpu))

    workdir = tempfile.mkdtemp(prefix="roam-bench-acm-")

    # Lab 1: no MAC; the upload before, under and after the flood.
    lab = Lab(workdir, "plain", ["--kernel-filter", args.kernel_filter])
    try:
        wait_for("the client's forward", lambda: "[app] forwarding" in lab.client_log())
        upload = Upload(lab.forward)
        wait_for("the control channel", lambda: "established from local port" in lab.client_log())
        channel_port = int(re.search(r"established from local port (\d+)", lab.client_log()).group(1))
        note("control channel from client port %d; phases of %.1f s" % (channel_port, args.seconds))
        before = upload.rate(args.seconds)
        flood = start_flood(lab.udp["client"], channel_port)
        under = upload.rate(args.seconds)
        flood_result = json.loads(flood.communicate(timeout=args.seconds + 60)[0].strip().splitlines()[-1])
        after = upload.rate(args.seconds)
        # The flooder's own cost: the same flood at a UDP socket nobody reads (the kernel
        # sends each datagram, queues it and drops it once the buffer is full), so only the
        # flooder and the kernel's send path compete with the upload, not roam-client.
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.bind(("127.0.0.1", 0))
        elsewhere_flood = start_flood(sink.getsockname()[1], channel_port)
        elsewhere = upload.rate(args.seconds)
        elsewhere_result = json.loads(
            elsewhere_flood.communicate(timeout=args.seconds + 60)[0].strip().splitlines()[-1])
        sink.close()
        upload.close()
        note("upload %.3f Gbit/s, under flood %.3f, after %.3f; flood %s" % (before, under, after, flood_result))
        note("upload while the same flooder floods a socket nobody reads: %.3f Gbit/s (flood %s)" % (
            elsewhere, elsewhere_result))
    finally:
        lab.stop()
    text = lab.client_log()

    # The MAC's cost: fresh pairs, each measured the same way (connect, 1 s to warm up, one
    # phase): without, with --segment-mac on both ends, without again.
    def fresh_upload(name, extra):
        pair = Lab(workdir, name, extra)
        try:
            wait_for("the client's forward", lambda: "[app] forwarding" in pair.client_log())
            upload = Upload(pair.forward)
            wait_for("the control channel", lambda: "established from local port" in pair.client_log())
            time.sleep(1.0)  # registration (which turns signing on) and slow start
            rate = upload.rate(args.seconds)
            upload.close()
        finally:
            pair.stop()
        return rate, pair.client_log()

    plain_before, _ = fresh_upload("plain-before", [])
    with_mac, mac_log = fresh_upload("mac", ["--segment-mac"])
    plain_after, _ = fresh_upload("plain-after", [])
    signed = re.search(r"segment MAC: connections (\d+), signed (\d+), verified (\d+)", mac_log)
    if signed is None or int(signed.group(2)) == 0:
        raise RuntimeError("the MAC pair signed nothing (%s)" % workdir)
    note("upload without MAC %.3f, with --segment-mac %.3f, without %.3f Gbit/s (client signed %s, verified %s)" % (
        plain_before, with_mac, plain_after, signed.group(2), signed.group(3)))

    follower = re.search(r"frames forged (\d+) replayed (\d+).*ACMs (\d+) applied (\d+) refused (\d+).*"
                         r"connections moved (\d+)", text)
    packets = re.search(r"packets in (\d+) \(malformed (\d+)", text)
    in_kernel = re.search(r"dropped in kernel (\d+)", text)
    if follower is None or packets is None or in_kernel is None:
        raise RuntimeError("no counters in the client's log (%s)" % workdir)
    forged, _replayed, _acms, applied, _refused, moved = map(int, follower.groups())
    result = dict(cpu)
    result.update({
        "throughput_ratio_under_flood": round(under / ((before + after) / 2), 3),
        "upload_gbps": round(before, 3),
        "upload_gbps_under_flood": round(under, 3),
        "upload_gbps_after": round(after, 3),
        "flood_sent": flood_result["sent"],
        "flood_pps": flood_result["pps"],
        "flood_rate_asked": args.flood_rate,
        "flooder_cpu": args.flooder_cpu,
        "flood_rx": args.flood_rx,
        # References for the flooder's own CPU (it shares the cores with the upload).
        "upload_gbps_flooder_elsewhere": round(elsewhere, 3),
        "flood_pps_elsewhere": elsewhere_result["pps"],
        "throughput_ratio_flooder_elsewhere": round(elsewhere / ((before + after) / 2), 3),
        "throughput_ratio_flood_over_flooder_elsewhere": round(under / elsewhere, 3),
        "client_packets_in": int(packets.group(1)),
        "kernel_filter": args.kernel_filter,
        # Forgeries the client's kernel sequence filter dropped before roam-client read them
        # (and datagrams lost to a full socket buffer: the socket's one drop count).
        "client_rx_dropped_kernel": int(in_kernel.group(1)),
        "forged_reaching_channel": forged,
        "acms_applied": applied,
        "redirects_by_forgery": moved,
        "upload_gbps_segment_mac": round(with_mac, 3),
        "upload_gbps_segment_mac_reference": round((plain_before + plain_after) / 2, 3),
        "segment_mac_throughput_ratio": round(with_mac / ((plain_before + plain_after) / 2), 3),
    })
    # The control-port hijacks of issue 11, attempted against a running lab (acm_hijack.py).
    hijack = acm_hijack.measure(os.path.abspath(ROAM_SERVER), os.path.abspath(ROAM_CLIENT), workdir)
    note("hijack attempts %d, succeeded %d" % (hijack["hijack_attempts"], hijack["hijack_attempts_succeeded"]))
    result.update(hijack)
    # The same with TUN offloads on (root only): segment_mac_ratio_offload (acm_offload.py).
    result.update(acm_offload.measure(args.seconds, workdir, os.path.abspath(ROAM_SERVER),
                                      os.path.abspath(ROAM_CLIENT)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
