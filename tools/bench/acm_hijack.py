"""The hijack attempts of issue 11 against a running lab, counted: how many succeeded.

roam-servers A and B (echo, members of one pool, each with a --control port), a server M
certified by ANOTHER pool, and a roam-client with one live echo connection to A. Each
round makes these attempts, then checks the live connection still echoes from A:
  - `roamctl migrate --from A --to B` with a key that is not an operator of A;
  - `roamctl migrate --from A --to M` with the operator's key (M is not a member);
  - `roamctl status --server A` with the stranger's key.
An attempt succeeded when roamctl answered "ok" or the live connection stopped echoing
from A (moved, or broken). hijack_attempts_succeeded must be 0. Unprivileged (UDP links
on loopback).
"""
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from lab_keys import LabPool  # noqa: E402
from bench_util import free_port, stop_processes  # noqa: E402

CLIENT_ADDR, A_ADDR, B_ADDR, M_ADDR = "198.18.11.2", "198.18.12.2", "198.18.13.2", "198.18.14.2"


def _wait(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for " + what)


def _echo(sock):
    data = os.urandom(512)
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(len(data) - len(got))
        if not chunk:
            return False
        got += chunk
    return got == data


def measure(roam_server, roam_client, workdir, rounds=10):
    roamctl = os.path.join(os.path.dirname(roam_server), "roamctl")
    pool = LabPool(roamctl, os.path.join(workdir, "hijack-keys"))
    udp = {n: free_port(socket.SOCK_DGRAM) for n in ("client", "A", "B", "M")}
    control = {n: "127.0.0.1:%d" % free_port(socket.SOCK_STREAM) for n in ("A", "B", "M")}
    forward = free_port(socket.SOCK_STREAM)
    logs = {n: open(os.path.join(workdir, "hijack-%s.log" % n), "w") for n in ("client", "A", "B", "M")}
    procs = []
    addresses = {"A": A_ADDR, "B": B_ADDR, "M": M_ADDR}
    try:
        for name in ("A", "B", "M"):
            if name == "M":
                key, cert, _ = pool.outsider("M")
                creds = ["--key", key, "--pool-cert", cert, "--operators", pool.operators]
            else:
                creds = pool.server_args(name)
            procs.append(subprocess.Popen(
                [roam_server, "--link", "udp:127.0.0.1:%d" % udp[name], "--addr", addresses[name], "--route",
                 "198.18.11.0/24=127.0.0.1:%d" % udp["client"], "--control", control[name]] + creds + ["echo"],
                stdout=logs[name], stderr=subprocess.STDOUT))
        argv = [roam_client, "--link", "udp:127.0.0.1:%d" % udp["client"], "--addr", CLIENT_ADDR,
                "-L", "127.0.0.1:%d:%s:7000" % (forward, A_ADDR)]
        for name in ("A", "B", "M"):
            argv += ["--route", "%s.0/24=127.0.0.1:%d" % (addresses[name].rsplit(".", 1)[0], udp[name])]
        procs.append(subprocess.Popen(argv, stdout=logs["client"], stderr=subprocess.STDOUT))
        env = dict(os.environ, ROAMCTL_KEY=pool.operator_key)

        def ctl(*args):
            return subprocess.run([roamctl] + list(args), capture_output=True, text=True, timeout=60, env=env)

        def sessions(name):
            out = ctl("status", "--server", control[name])
            return json.loads(out.stdout)["sessions"] if out.returncode == 0 else -1

        def connectable():
            try:
                socket.create_connection(("127.0.0.1", forward), timeout=1).close()
                return True
            except OSError:
                return False

        _wait(connectable, "the client's forward")
        _wait(lambda: sessions("A") == 0, "A idle")
        live = socket.create_connection(("127.0.0.1", forward), timeout=10)
        if not _echo(live):
            raise RuntimeError("the live connection does not echo")
        _wait(lambda: sessions("A") == 1, "the live session on A")
        stranger = pool.stranger_operator()
        attempts = succeeded = 0
        for _ in range(rounds):
            tries = [ctl("migrate", "--from", control["A"], "--to", control["B"], "--key", stranger),
                     ctl("migrate", "--from", control["A"], "--to", control["M"]),
                     ctl("status", "--server", control["A"], "--key", stranger)]
            for out in tries:
                attempts += 1
                if out.returncode == 0 or out.stdout.startswith("ok"):
                    succeeded += 1
            if not _echo(live) or sessions("A") != 1:
                succeeded += 1
        live.close()
        return {"hijack_attempts": attempts, "hijack_attempts_succeeded": succeeded}
    finally:
        stop_processes(procs, 20)
