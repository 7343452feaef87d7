#!/usr/bin/env python3
"""Shutdown with connections open: 20 idle connections through roam-client -> roam-server
echo, then one of the two processes gets SIGTERM (or SIGINT). That process must exit 0
(within a generous timeout, printing its final counters line); every kernel socket on the
client's forward must see EOF or a reset (not hang); and no roam process may remain.
The surviving process must keep running and later stop cleanly too.

Scenarios: {SIGTERM, SIGINT} x {client, server} with roam-server echo; then SIGTERM x
{client, server} with roam-server relay to a Python kernel echo backend, where every
backend socket must also see EOF or a reset.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

CONNECTIONS = 20
SOCKET_TIMEOUT = 60.0


def open_idle_connections(pair):
    socks = []
    for i in range(CONNECTIONS):
        sock = pair.connect(timeout=harness.IO_TIMEOUT)
        message = ("hello %d\n" % i).encode()
        sock.sendall(message)
        got = b""
        while len(got) < len(message):
            data = sock.recv(4096)
            if not data:
                raise TestFailure("connection #%d closed before its echo arrived" % i)
            got += data
        check(got == message, "connection #%d: echo %r != %r" % (i, got, message))
        socks.append(sock)
    return socks


def wait_for_close(socks, label):
    """Each socket must see EOF or a reset. Returns (eof count, reset count)."""
    eof = reset = 0
    deadline = time.monotonic() + SOCKET_TIMEOUT
    for i, sock in enumerate(socks):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TestFailure("%s: connection #%d saw neither EOF nor reset within %.0f s (hang)"
                                  % (label, i, SOCKET_TIMEOUT))
            sock.settimeout(remaining)
            try:
                data = sock.recv(4096)
            except socket.timeout:
                continue  # loops to the failure above
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                reset += 1
                break
            if not data:
                eof += 1
                break
            # unexpected bytes on an idle echo connection
            raise TestFailure("%s: connection #%d received unexpected data %r" % (label, i, data[:64]))
        sock.close()
    return eof, reset


def pgrep_exact(argv):
    """PIDs whose full command line is exactly argv (pgrep -f -x on the escaped command)."""
    pattern = "^" + " ".join(re.escape(a) for a in argv) + "$"
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def check_gone(proc):
    check(proc.popen.returncode is not None, "%s: Popen says it is still running" % proc.name)
    check(harness.pid_gone(proc.pid), "%s: pid %d still exists (zombie or alive)" % (proc.name, proc.pid))
    pids = pgrep_exact(proc.argv)
    check(not pids, "%s: pgrep still finds its exact command line: pids %s" % (proc.name, pids))


class EchoBackend(harness.KernelBackend):
    """Kernel echo backend for the relay scenarios; records how each connection ended."""

    def __init__(self):
        self.outcomes = []   # one per connection that carried data: "eof" | "reset" | "timeout"
        super().__init__(backlog=64)

    def serve(self, conn):
        conn.settimeout(SOCKET_TIMEOUT)
        carried = False
        try:
            while True:
                data = conn.recv(4096)
                if not data:
                    outcome = "eof"
                    break
                carried = True
                conn.sendall(data)
        except socket.timeout:
            outcome = "timeout"
        except OSError:
            outcome = "reset"
        conn.close()
        if carried:  # the harness's readiness probe carries nothing
            with self.lock:
                self.outcomes.append(outcome)

    def wait_for(self, count, label):
        deadline = time.monotonic() + SOCKET_TIMEOUT + 5
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.outcomes) >= count:
                    break
            time.sleep(0.05)
        with self.lock:
            outcomes = list(self.outcomes)
        check(len(outcomes) >= count, "%s: only %d of %d backend sockets saw EOF or reset (hang)"
              % (label, len(outcomes), count))
        check("timeout" not in outcomes, "%s: %d backend sockets hung until the timeout"
              % (label, outcomes.count("timeout")))
        return outcomes.count("eof"), outcomes.count("reset")


def scenario(sig, target, mode="echo"):
    label = "%s %s to %s" % (mode, signal.Signals(sig).name, target)
    backend = EchoBackend() if mode == "relay" else None
    try:
        _scenario(sig, target, label, backend)
    finally:
        if backend is not None:
            backend.close()


def _scenario(sig, target, label, backend):
    mode = "relay" if backend is not None else "echo"
    with harness.Pair(mode=mode, backend="127.0.0.1:%d" % backend.port if backend else None) as pair:
        socks = open_idle_connections(pair)
        log("%s: %d idle connections open" % (label, len(socks)))
        victim = pair.client if target == "client" else pair.server
        survivor = pair.server if target == "client" else pair.client
        victim.send_signal(sig)
        try:
            eof, reset = wait_for_close(socks, label)
        finally:
            for s in socks:
                s.close()
        result = victim.stop(None)  # waits for the exit it has begun; checks code 0 and counters
        log("%s: %s exited 0 %.2f s after the signal; sockets saw EOF %d, reset %d; counters %s"
            % (label, victim.role, result.seconds, eof, reset, result.counters))
        check_gone(victim)
        if backend is not None:
            b_eof, b_reset = backend.wait_for(CONNECTIONS, label)
            log("%s: backend sockets saw EOF %d, reset %d" % (label, b_eof, b_reset))
        check(survivor.alive(), "%s: the %s died when its peer was stopped (exit %s)\n%s"
              % (label, survivor.role, survivor.popen.returncode, survivor.tail()))
        # leaving the block stops the survivor with SIGTERM and checks it
    check_gone(pair.client)
    check_gone(pair.server)


def main():
    for sig in (signal.SIGTERM, signal.SIGINT):
        for target in ("client", "server"):
            scenario(sig, target)
    for target in ("client", "server"):
        scenario(signal.SIGTERM, target, mode="relay")


if __name__ == "__main__":
    harness.run(main)
