#!/usr/bin/env python3
"""Dead and unreachable servers: the local application gets a reset, never a clean EOF,
within the documented bound, and roam-client logs why (issue 12).

1. kill -9 of the server (--dead-peer 6): one local app idle, waiting to read, and one
   sending without pause. Both must see a reset (ConnectionResetError or BrokenPipeError)
   within the bound (6 s of silence + 1 s of polling) + slack, and the client must log
   "lost: keepalive timeout" and "lost: retransmission timeout" and count one of each.
2. --dead-peer 4: the same idle case with another bound (the option is taken as given).
3. Nothing at the route's UDP port: the local app gets a reset within the channel wait
   (2 s) + --connect-timeout (3 s here) + slack, and the client logs "connect timeout".
4. A live server with nothing listening on the forward's port: a reset (refused), logged.

The bounds are short so that the test takes seconds, not a minute: the defaults
(--dead-peer 30, --connect-timeout 10) are pinned by tests/apps/link_cli_test.cpp, and
the rule is the same for any bound (tests/stack/dead_peer_test.cpp).
The socket timeouts below are hang detectors (bound + 60 s), not timed assertions; the
times are printed as information.
"""
import os
import re
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

SLACK = 60.0
POLL = 1.0            # the dead-peer check runs at least every 0.5 s; a second of margin
CHANNEL_WAIT = 2.0    # a carrier waits this long for its control channel (Follower)
CONNECT_TIMEOUT = 3.0     # --connect-timeout given to the clients below


def expect_reset_on_read(sock, bound, what):
    """Reads until the connection ends; it must end with a reset, not EOF, within bound + SLACK."""
    sock.settimeout(bound + SLACK)
    started = time.monotonic()
    try:
        data = sock.recv(65536)
    except (ConnectionResetError, BrokenPipeError):
        elapsed = time.monotonic() - started
        log("INFO %s: reset after %.1f s (bound %.0f s)" % (what, elapsed, bound))
        return elapsed
    except socket.timeout:
        raise TestFailure("%s: no reset within %.0f s (bound %.0f s + %.0f s slack): hang" % (
            what, bound + SLACK, bound, SLACK))
    if data == b"":
        raise TestFailure("%s: clean EOF instead of a reset" % what)
    raise TestFailure("%s: unexpected data %r" % (what, data[:64]))


def connect_expect_reset(port, bound, what):
    """Connects to a forward whose connection must end with a reset.

    The reset can come before connect() returns: the kernel completes the
    handshake for roam-client's listener, and if this process is scheduled
    late, the client's reset (after the server refused) is already there and
    connect() reports it. That is the reset the test waits for.
    """
    started = time.monotonic()
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    except ConnectionResetError:
        log("INFO %s: reset during connect after %.1f s (bound %.0f s)" % (what, time.monotonic() - started, bound))
        return
    try:
        expect_reset_on_read(sock, bound, what)
    finally:
        sock.close()


def sender(sock, bound):
    """Sends until the connection breaks; returns how long after the start it broke."""
    sock.settimeout(bound + SLACK)
    chunk = os.urandom(64 * 1024)
    started = time.monotonic()
    try:
        while True:
            sock.sendall(chunk)
    except (ConnectionResetError, BrokenPipeError):
        return time.monotonic() - started
    except socket.timeout:
        raise TestFailure("sending app: no reset within %.0f s: hang" % (bound + SLACK))


def wait_log(proc, needle, timeout=harness.READY_TIMEOUT):
    if not proc.wait_for_log(needle, timeout=timeout):
        raise TestFailure("%s never logged %r\n%s" % (proc.name, needle, proc.tail()))


def kill_server(pair):
    pair.server.stop(signal.SIGKILL, check_exit=False)
    pair.server = None  # killed on purpose: not checked for a clean exit


def killed_server(bound_s, client_extra):
    bound = bound_s + POLL
    with harness.Pair(mode="echo", client_extra=client_extra) as pair:
        idle = pair.connect()
        harness.echo_round_trip(idle, 1024, "idle app's first echo")
        busy = pair.connect()
        harness.echo_round_trip(busy, 1024, "sending app's first echo")
        kill_server(pair)
        log("server killed with SIGKILL")
        sending = harness.Worker(sender, busy, bound, name="sender")
        sending.start()
        expect_reset_on_read(idle, bound, "idle app (--dead-peer %d)" % bound_s)
        elapsed = sending.finish(bound + SLACK + 10)
        log("INFO sending app: reset after %.1f s (bound %.0f s)" % (elapsed, bound))
        wait_log(pair.client, "lost: keepalive timeout")
        wait_log(pair.client, "lost: retransmission timeout")
        line = [l for l in pair.client.stderr_text().splitlines() if "lost: keepalive timeout" in l][0]
        check("carrier to %s:7000" % harness.SERVER_ADDR in line, "the log line names no server: %r" % line)
        idle.close()
        busy.close()
        pair.client.stop()
        text = pair.client.stderr_text()
        m = re.search(r"carriers lost: reset by peer (\d+), refused (\d+), connect timeout (\d+), "
                      r"keepalive timeout (\d+), retransmission timeout (\d+)", text)
        check(m is not None, "no 'carriers lost' line at shutdown\n%s" % pair.client.tail())
        counts = [int(x) for x in m.groups()]
        check(counts[3] == 1 and counts[4] == 1,
              "carriers lost: expected one keepalive and one retransmission timeout, got %s" % m.group(0))


def unreachable_server():
    # A UDP port with nothing behind it: packets toward the server vanish.
    nowhere = harness.free_udp_port()
    client_udp = harness.free_udp_port()
    forward = harness.free_tcp_port()
    client = harness.RoamProcess("client", [
        harness.ROAM_CLIENT, "--link", "udp:127.0.0.1:%d" % client_udp, "--addr", harness.CLIENT_ADDR,
        "--route", "%s=127.0.0.1:%d" % (harness.SERVER_NET, nowhere),
        "--connect-timeout", "%d" % CONNECT_TIMEOUT,
        "-L", "127.0.0.1:%d:%s:7000" % (forward, harness.SERVER_ADDR)])
    wait_log(client, "[app] forwarding ")
    bound = CHANNEL_WAIT + CONNECT_TIMEOUT + POLL
    connect_expect_reset(forward, bound, "app of an unreachable server")
    wait_log(client, "lost: connect timeout")
    client.stop()


def no_listener():
    # A second forward to a port the (live) server does not listen on.
    port = harness.free_tcp_port()
    extra = ["-L", "127.0.0.1:%d:%s:7999" % (port, harness.SERVER_ADDR), "--connect-timeout", "%d" % CONNECT_TIMEOUT]
    with harness.Pair(mode="echo", client_extra=extra) as pair:
        connect_expect_reset(port, CHANNEL_WAIT + CONNECT_TIMEOUT + POLL, "app of a port without listener")
        wait_log(pair.client, "lost: refused")
        # The server itself is fine: the echo forward still works.
        ok = pair.connect()
        harness.echo_round_trip(ok, 512, "echo after the refusal")
        ok.close()
        pair.stop_all()


def main():
    killed_server(6, ["--dead-peer", "6"])
    killed_server(4, ["--dead-peer", "4"])
    unreachable_server()
    no_listener()


if __name__ == "__main__":
    harness.run(main)
