#!/usr/bin/env python3
"""Register flood: what 40 REGISTER frames of 4096 made-up ids cost a roam-server that
holds 2000 connections (issue 11, finding 2), measured as the server's CPU time.

Topology (UDP links on loopback, no privilege): roam-client 198.18.11.2 with a forward to
roam-server A 198.18.12.2 (echo); the attacker, tools/bench/register_probe, at
198.18.14.2 with a fresh key. N connections are opened through the forward (one echo
round trip each) and registered; then A's CPU time (utime + stime from /proc) is read
over an idle window, and over the same window length around the flood (the probe opens
its channel, sends the frames and waits --hold-ms). Reported: flood_cpu_ms (flood window
minus idle window), and A's registration counters.

Run it once per server binary to compare builds in one session:
  tools/bench/register_flood.py --server-bin OLD/roam-server
  tools/bench/register_flood.py --server-bin build/apps/roam-server
The last line of stdout is one JSON object.
"""
import argparse
import json
import os
import resource
import socket
import subprocess
import struct
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402


class IdRelay:
    """Carries A -> client datagrams and reads each connection's id off A's SYN-ACKs
    (client ISN << 32 | server ISN), as an on-path observer can."""

    def __init__(self, victim_port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.victim = ("127.0.0.1", victim_port)
        self.ids = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def port(self):
        return self.sock.getsockname()[1]

    def _run(self):
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if len(data) >= 40 and data[0] >> 4 == 4 and data[9] == 6:
                ihl = (data[0] & 0x0F) * 4
                sport, _, seq, ack = struct.unpack("!HHII", data[ihl:ihl + 12])
                if sport == 7000 and data[ihl + 13] & 0x12 == 0x12:
                    self.ids.append((((ack - 1) & 0xFFFFFFFF) << 32) | seq)
            self.sock.sendto(data, self.victim)

    def stop(self):
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()


def cpu_ms(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    return ticks * 1000.0 / os.sysconf("SC_CLK_TCK")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--server-bin", default=os.path.join(ROOT, "build", "apps", "roam-server"))
    parser.add_argument("--client-bin", default=os.path.join(ROOT, "build", "apps", "roam-client"))
    parser.add_argument("--probe-bin", default=os.path.join(ROOT, "build", "tools", "bench", "register_probe"))
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--ids-per-frame", type=int, default=4096)
    parser.add_argument("--hold-ms", type=int, default=3000)
    parser.add_argument("--real-ids", action="store_true",
                        help="flood with the server's real connection ids (read off the wire), repeated")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.connections + 256)), hard))

    udp = {n: harness.free_udp_port() for n in ("A", "client", "probe")}
    relay = IdRelay(udp["client"])
    control = "127.0.0.1:%d" % harness.free_tcp_port()
    forward = harness.free_tcp_port()
    server = harness.RoamProcess("server", [
        args.server_bin, "--link", "udp:127.0.0.1:%d" % udp["A"], "--addr", harness.SERVER_ADDR,
        "--route", "%s=127.0.0.1:%d" % (harness.CLIENT_NET, relay.port()),
        "--route", "198.18.14.0/24=127.0.0.1:%d" % udp["probe"], "--control", control,
        "--udp-allow", "127.0.0.1"] + harness.lab_pool().server_args("A") + ["echo"])
    client = None
    probe = None
    socks = []
    try:
        if not server.wait_for_log("[app] serving "):
            raise harness.TestFailure("server did not start:\n" + server.tail())
        client = harness.RoamProcess("client", [
            args.client_bin, "--link", "udp:127.0.0.1:%d" % udp["client"], "--addr", harness.CLIENT_ADDR,
            "--route", "%s=127.0.0.1:%d" % (harness.SERVER_NET, udp["A"]),
            "-L", "127.0.0.1:%d:%s:7000" % (forward, harness.SERVER_ADDR), "--udp-allow", "127.0.0.1"])
        if not client.wait_for_log("[app] forwarding "):
            raise harness.TestFailure("client did not start:\n" + client.tail())
        for _ in range(args.connections):
            sock = socket.create_connection(("127.0.0.1", forward), timeout=30)
            sock.sendall(b"x")
            if sock.recv(1) != b"x":
                raise harness.TestFailure("no echo")
            socks.append(sock)

        def status():
            out = harness.roamctl("status", "--server", control).stdout.strip()
            return json.loads(out)

        deadline = time.monotonic() + 60
        while status()["registrations"] < args.connections:
            if time.monotonic() > deadline:
                raise harness.TestFailure("only %d registrations" % status()["registrations"])
            time.sleep(0.1)
        window = (args.hold_ms + 1500) / 1000.0
        idle0 = cpu_ms(server.pid)
        time.sleep(window)
        idle = cpu_ms(server.pid) - idle0
        before = status()
        t0 = cpu_ms(server.pid)
        start = time.monotonic()
        flood_args = ["--flood", str(args.frames), "--ids-per-frame", str(args.ids_per_frame)]
        if args.real_ids:
            ids = sorted(set(relay.ids))
            frame = ",".join("0x%x" % ids[i % len(ids)] for i in range(args.ids_per_frame))
            flood_args = ["--register", frame, "--repeat", str(args.frames)]
        probe = harness.RoamProcess("probe", [
            args.probe_bin, "--link", "udp:127.0.0.1:%d" % udp["probe"], "--addr", "198.18.14.2",
            "--route", "%s=127.0.0.1:%d" % (harness.SERVER_NET, udp["A"]), "--server", harness.SERVER_ADDR,
            "--hold-ms", str(args.hold_ms)] + flood_args)
        probe.wait_for_log("[probe] done", timeout=120)
        time.sleep(max(0.0, window - (time.monotonic() - start)))
        flood = cpu_ms(server.pid) - t0
        after = status()
        keys = [k for k in after if k.startswith("registrations") or k.startswith("channels")]
        result = {
            "server": args.server_bin,
            "connections": args.connections,
            "frames": args.frames,
            "ids": "real (repeated)" if args.real_ids else "random",
            "ids_per_frame": args.ids_per_frame,
            "window_s": window,
            "idle_cpu_ms": round(idle, 1),
            "flood_window_cpu_ms": round(flood, 1),
            "flood_cpu_ms": round(flood - idle, 1),
            "counters": {k: after[k] - before.get(k, 0) for k in keys if isinstance(after[k], int)},
            "probe": probe.stderr_text().strip().splitlines()[-3:],
        }
        print(json.dumps(result))
    finally:
        for sock in socks:
            sock.close()
        for proc in (probe, client, server):
            if proc is not None and proc.alive():
                proc.stop(check_exit=False)
        relay.stop()


if __name__ == "__main__":
    main()
