#!/usr/bin/env python3
"""roam-client --transparent (issue 15, tun2socks style): kernel applications reach
servers behind roam-server with no per-application setup, through a TUN device the client
creates and routes the overlay prefixes into.

Runs as root in a network namespace of its own (made here, deleted on every exit path;
the root namespace's routes are never touched): the script re-runs itself inside with
`ip netns exec`, where roam-server(s) and roam-client talk over UDP links on the
namespace's loopback (tests/integration/harness.py topologies) and the client adds
`--transparent rtp0 --transparent-route 198.18.12.0/24 ...`. Applications dial the
servers' userspace addresses (198.18.12.2:7000) directly.

  http    Pair (relay to a python http.server): `curl http://198.18.12.2:7000/blob`
          (16 MiB x ROAMSTACK_TEST_SCALE, at least 1 MiB) byte-exact (SHA-256); a
          connection to 198.18.99.1:80 (routed into the device, outside the overlay) is
          refused (RST); one to a port nothing listens on at the server is reset once
          its carrier is refused; UDP datagrams into the device are dropped. The client's exit
          line counts them; the device is gone after the client exits.
  ssh     Pair (relay to Debian's sshd on 127.0.0.1): `ssh -p 7000 198.18.12.2 CMD`
          runs a command and prints its answer.
  iperf3  Pair (relay to `iperf3 -s`): `iperf3 -c 198.18.12.2 -p 7000` for
          max(2, 3 x SCALE) s, exit 0 and bytes received.
  move    TwoServers (files; a client with --transparent only): a paced download (40 MiB x
          SCALE, at least 32 MiB: more than the buffers on the way) from 198.18.12.2:7000 through the device
          while `roamctl migrate A->B` moves it and then the client's own address changes
          (--addr-file, SIGUSR1: B answers `rebound`), SHA-256 exact; then a new connection
          to 198.18.12.2:7000 reaches B (the move is followed) and is byte-exact too.

Exit 0 passed, 1 failed, 77 skipped (not root, or curl/ssh/sshd/iperf3 missing).
"""
import functools
import hashlib
import http.server
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEVICE = "rtp0"
OUTSIDE = "198.18.99.1"  # routed into the device, outside every overlay route
NEW_CLIENT_ADDR = "198.18.11.7"  # the client's address after it moves (--addr-file, SIGUSR1)


def outer():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        print("SKIP: needs root and iproute2")
        sys.exit(77)
    for tool in ("curl", "ssh", "ssh-keygen", "iperf3", sshd_lab.SSHD):
        if shutil.which(tool) is None and not os.path.exists(tool):
            print("SKIP: %s is not installed (tools/setup installs it)" % tool)
            sys.exit(77)
    namespace = "rtp%04d" % (os.getpid() % 10000)
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    try:
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        code = subprocess.run(["ip", "netns", "exec", namespace, sys.executable, os.path.abspath(__file__),
                               "--inside"]).returncode
    finally:
        subprocess.run(["ip", "netns", "del", namespace])
    sys.exit(code)


# ------------------------------------------------------------------ inside the namespace

sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402
import sshd_lab  # noqa: E402


def scaled(nbytes, minimum):
    value = float(os.environ.get("ROAMSTACK_TEST_SCALE", "1.0"))
    return max(minimum, int(nbytes * value) // 65536 * 65536)


def transparent_args(*prefixes):
    argv = ["--transparent", DEVICE]
    for prefix in prefixes:
        argv += ["--transparent-route", prefix]
    return argv


def device_exists():
    return subprocess.run(["ip", "link", "show", DEVICE], capture_output=True).returncode == 0


def exit_counters(client):
    match = None
    for match in re.finditer(r"transparent: accepted (\d+), carried (\d+), carrier failures (\d+), "
                             r"refused \(outside the overlay\) (\d+), dropped: not tcp (\d+), foreign source (\d+)",
                             client.stderr_text()):
        pass
    check(match is not None, "no transparent counters line at the client's exit\n" + client.tail())
    names = ("accepted", "carried", "failures", "refused", "not_tcp", "foreign_source")
    return dict(zip(names, (int(x) for x in match.groups())))


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def part_http(work):
    size = scaled(16 << 20, 1 << 20)
    body = harness.pseudo_random_bytes(21, size)
    root = os.path.join(work, "www")
    os.mkdir(root)
    with open(os.path.join(root, "blob"), "wb") as f:
        f.write(body)
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        pair = harness.Pair(mode="relay", backend="127.0.0.1:%d" % web.server_address[1],
                            client_extra=transparent_args(harness.SERVER_NET, OUTSIDE + "/32"))
        with pair:
            check(pair.client.wait_for_log("[app] transparent: %s routes" % DEVICE), "no transparent line")
            check(device_exists(), "device %s missing while the client runs" % DEVICE)
            curl = subprocess.run(["curl", "-sS", "--fail", "--max-time", "120",
                                   "http://%s:7000/blob" % harness.SERVER_ADDR], capture_output=True, timeout=150)
            check(curl.returncode == 0, "curl through the transparent device failed: exit %d %s\n%s" % (
                curl.returncode, curl.stderr.decode(errors="replace"), pair.client.tail()))
            check(hashlib.sha256(curl.stdout).digest() == hashlib.sha256(body).digest(),
                  "curl got %d bytes, not the %d-byte file byte-exact" % (len(curl.stdout), len(body)))
            log("curl http://%s:7000/blob: %d bytes, SHA-256 exact" % (harness.SERVER_ADDR, len(body)))
            try:
                socket.create_connection((OUTSIDE, 80), timeout=30).close()
                raise TestFailure("a connection to %s:80 (outside the overlay) was accepted" % OUTSIDE)
            except ConnectionRefusedError:
                pass
            # A port nothing listens on at the server: the carrier is refused, and the
            # application, whose handshake lwIP completed, gets a reset (never a clean EOF).
            # (The reset may already meet connect() itself.)
            try:
                with socket.create_connection((harness.SERVER_ADDR, 7999), timeout=30) as closed:
                    closed.settimeout(60)
                    got = closed.recv(1)
                raise TestFailure("a connection to a closed port at the server read %r, not a reset" % got)
            except ConnectionResetError:
                pass
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(3):
                udp.sendto(b"not tcp", (harness.SERVER_ADDR, 9))
            udp.close()
            log("%s:80 refused; %s:7999 (nothing listening) reset; UDP into the device sent" % (
                OUTSIDE, harness.SERVER_ADDR))
            pair.stop_all()
            counters = exit_counters(pair.client)
            log("client counters: %s" % counters)
            check(counters["accepted"] == 2 and counters["carried"] == 1 and counters["failures"] == 1,
                  "accepted/carried/failures %s" % counters)
            check(counters["refused"] == 1, "refused %s, expected 1" % counters["refused"])
            check(counters["not_tcp"] >= 3, "not tcp %s, expected at least 3" % counters["not_tcp"])
            check(counters["foreign_source"] == 0, "counters %s" % counters)
            check(not device_exists(), "device %s still there after the client exited" % DEVICE)
            log("device %s removed at exit" % DEVICE)
    finally:
        web.shutdown()


def part_ssh(work):
    with sshd_lab.Sshd(work, "[%s]:7000" % harness.SERVER_ADDR) as sshd, \
            harness.Pair(mode="relay", backend="127.0.0.1:%d" % sshd.port,
                         client_extra=transparent_args(harness.SERVER_NET)) as pair:
        check(pair.client.wait_for_log("[app] transparent: %s routes" % DEVICE), "no transparent line")
        token = os.urandom(8).hex()
        ssh = subprocess.run(sshd.ssh_argv(["-p", "7000", "%s@%s" % (sshd.user, harness.SERVER_ADDR),
                                            "echo transparent-%s; uname -s" % token]),
                             capture_output=True, text=True, timeout=120)
        check(ssh.returncode == 0 and ssh.stdout.split() == ["transparent-" + token, "Linux"],
              "ssh through the transparent device: exit %d, out %r, err %r" % (
                  ssh.returncode, ssh.stdout, ssh.stderr[-500:]))
        log("ssh -p 7000 %s ran a command: %r" % (harness.SERVER_ADDR, ssh.stdout.split()))


def part_iperf():
    port = harness.free_tcp_port()
    # No probe connection may reach iperf3 -s (it serves one test at a time and resets the
    # next client while it ends a probe): wait for its own line, and no Pair probe.
    server = subprocess.Popen(["iperf3", "-s", "--forceflush", "-B", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seconds = max(2, int(round(3 * float(os.environ.get("ROAMSTACK_TEST_SCALE", "1.0")))))
    try:
        for line in server.stdout:
            if "Server listening" in line:
                break
        threading.Thread(target=server.stdout.read, daemon=True).start()
        with harness.Pair(mode="relay", backend="127.0.0.1:%d" % port, probe=False,
                          client_extra=transparent_args(harness.SERVER_NET)) as pair:
            check(pair.client.wait_for_log("[app] transparent: %s routes" % DEVICE), "no transparent line")
            run = subprocess.run(["iperf3", "-c", harness.SERVER_ADDR, "-p", "7000", "-t", str(seconds), "-J",
                                  "--connect-timeout", "30000"], capture_output=True, text=True,
                                 timeout=seconds + 120)
            import json
            try:
                report = json.loads(run.stdout)
            except ValueError:
                raise TestFailure("iperf3 exited %d without a JSON report: %s" % (run.returncode, run.stdout[-500:]))
            check(run.returncode == 0 and "error" not in report, "iperf3 exited %d: %s" % (
                run.returncode, report.get("error")))
            received = report["end"]["sum_received"]
            check(received["bytes"] > 0, "iperf3 received nothing: %s" % received)
            log("iperf3 -c %s -p 7000: %.1f Mbit/s (%d MiB in %.1f s)" % (
                harness.SERVER_ADDR, received["bits_per_second"] / 1e6, received["bytes"] >> 20,
                received["seconds"]))
    finally:
        server.terminate()
        server.wait()


def download(sock, name, size, marks, on_mark):
    sock.sendall((name + "\n").encode())
    reader = harness.MarkedReader(sock, marks, size, what="the download", max_rate=max(size // 4, 1 << 20))
    worker = harness.Worker(reader.run, name="reader")
    worker.start()
    for i in range(len(marks)):
        check(reader.wait_for_mark(i, worker), "the download ended before mark %d" % i)
        reader.release(i)
        on_mark(i)
    worker.finish()
    check(reader.received == size, "downloaded %d of %d bytes" % (reader.received, size))
    return reader.digest.digest()


def small_window_connection():
    """To server A's files app through the device, with a small receive buffer (fewer bytes
    in flight: the server is still sending when the moves come)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 10)
    sock.settimeout(harness.IO_TIMEOUT)
    sock.connect((harness.SERVER_ADDR, 7000))
    return sock


def part_move(work):
    # Far more than the buffers between the files app and the reader hold (lwIP's send
    # buffers and windows of 4 MiB on the carrier and the local leg, the splice's held
    # bytes, the kernel socket's): the server must still be sending when the moves come.
    size = scaled(40 << 20, 32 << 20)
    root = os.path.join(work, "files")
    os.mkdir(root)
    body = harness.pseudo_random_bytes(22, size)
    with open(os.path.join(root, "blob"), "wb") as f:
        f.write(body)
    want = hashlib.sha256(body).digest()
    address_file = os.path.join(work, "client-address")
    with open(address_file, "w") as f:
        f.write(harness.CLIENT_ADDR + "\n")
    with harness.TwoServers(mode="files", mode_args=["--root", root], forwards=0,
                            client_extra=transparent_args(harness.SERVER_NET, harness.SERVER_B_NET)
                            + ["--addr-file", address_file]) as t:
        check(t.client.wait_for_log("[app] transparent: %s routes" % DEVICE), "no transparent line")
        sock = small_window_connection()

        def act(index):
            if index == 0:
                t.migrate("A", "B", expect_moved=1)
                return
            # Once B knows the moved connection as ours (a client move that overtakes the
            # registration after a server move is refused: "not here").
            deadline = time.monotonic() + harness.READY_TIMEOUT
            while t.status("B").get("registrations", 0) < 1:
                check(time.monotonic() < deadline, "the client never registered its connection at B")
                time.sleep(0.1)
            with open(address_file, "w") as f:
                f.write(NEW_CLIENT_ADDR + "\n")
            t.client.popen.send_signal(signal.SIGUSR1)
            check(t.client.wait_for_log("our address changes from %s to %s" % (harness.CLIENT_ADDR, NEW_CLIENT_ADDR)),
                  "the client did not change its address:\n" + t.client.tail())
            check(t.client.wait_for_log("points at us directly"), "B did not answer rebound:\n" + t.client.tail())
        digest = download(sock, "blob", size, [size // 16, size // 8], act)
        sock.close()
        check(digest == want, "the moved download is not byte-exact")
        log("download through the device: server moved A->B, then the client %s->%s: %d bytes, SHA-256 exact" % (
            harness.CLIENT_ADDR, NEW_CLIENT_ADDR, size))
        check(t.client.wait_for_log("connection(s) follow (ACM"), "the client did not follow the move")
        second = small_window_connection()

        def on_b(_index):
            check(t.status("B")["sessions"] == 1 and t.status("A")["sessions"] == 0,
                  "the new connection did not go to B")
        check(download(second, "blob", size, [size // 16], on_b) == want, "the download after the move is not exact")
        second.close()
        log("a new connection to %s:7000 after the move went to B: %d bytes, SHA-256 exact" % (
            harness.SERVER_ADDR, size))


def part_config():
    """Start-up refusals: exit 2 with the reason, no device left behind."""
    base = [harness.ROAM_CLIENT, "--addr", harness.CLIENT_ADDR]
    udp = ["--link", "udp:127.0.0.1:%d" % harness.free_udp_port(), "--route", "%s=127.0.0.1:9" % harness.SERVER_NET]
    cases = [
        (base + ["--link", "tun:rtp1"] + transparent_args(harness.SERVER_NET), "needs a udp link"),
        (base + udp + transparent_args("127.0.0.0/8"), "would take the link's own datagrams"),
        (base + udp + transparent_args("169.254.0.0/16"), "lies inside --transparent-route"),
        (base + udp + ["--transparent", DEVICE], "needs at least one --transparent-route"),
        (base + udp + ["--transparent-route", harness.SERVER_NET], "needs --transparent DEV"),
        (base + udp + ["--transparent", DEVICE, "--transparent-route", "2001:db8::/32"], "is not an IPv4 prefix"),
    ]
    for argv, reason in cases:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        check(out.returncode == 2 and reason in out.stderr, "%s: exit %d, %r (expected %r)" % (
            " ".join(argv[1:]), out.returncode, out.stderr.strip(), reason))
        check(not device_exists(), "a refused start left %s behind" % DEVICE)
    log("start-up refusals: tun link, link endpoint routed, kernel address routed, missing options, IPv6")


def inside():
    work = harness.log_dir()
    part_config()
    part_http(work)
    part_ssh(work)
    part_iperf()
    part_move(work)


if __name__ == "__main__":
    if "--inside" in sys.argv:
        harness.run(inside)
    else:
        outer()
