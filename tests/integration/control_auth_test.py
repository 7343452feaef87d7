#!/usr/bin/env python3
"""Trust between hosts on the control port (issue 11, finding 1): every attack an outsider
on the management network tried must fail, and the live connection must stay where it is.

Topology (harness.TwoServers, mode echo, both in the test's pool; one live echo connection
on A kept through the whole test) plus a server M whose key is certified by ANOTHER pool.
The independent control-port client (control_port.py, dissononce) plays the attackers.

1. Plain bytes (a migrate request without the Noise handshake): closed, nothing moves.
2. roamctl migrate / status with a key that is not in A's --operators: "error not
   authorized", exit 1.
3. A pool member (a valid certificate, not an operator) asks for a move: refused.
4. The operator's key (not a pool member) sends a session frame: refused, nothing imported.
5. Session frames from a key without any certificate: refused.
6. roamctl migrate A -> M (another pool's member): "error ... not a member of this pool",
   nothing froze, M imported nothing, the connection still echoes on A.
7. A half-open handshake is closed by the server's handshake timeout.
8. A server whose --pool-cert certifies another key refuses to start.
Then the genuine move A -> B works and the connection echoes from B. Counters checked on
A and B: control_refused, control_handshake_failed, targets_refused, imports.
"""
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402
from control_port import SecureControl, frame, read_reply  # noqa: E402

TYPE_MIGRATE = 1
TYPE_SESSION = 2
TYPE_REPLY = 4
TYPE_STATUS = 5
WAIT = 30.0


def expect_not_authorized(sock, what):
    reply = read_reply(sock)
    check(reply is not None and reply[0] == TYPE_REPLY and reply[1].startswith("error not authorized"),
          "%s: answered %r, expected 'error not authorized ...'" % (what, reply))
    log("    %s: %s" % (what, reply[1]))


def still_echoes(sock, where):
    harness.echo_round_trip(sock, what="the live connection (%s)" % where)


def main():
    pool = harness.lab_pool()
    with harness.TwoServers(mode="echo") as t:
        live = t.connect()
        still_echoes(live, "before")
        a, b = t.controls["A"], t.controls["B"]
        before_a = t.status("A")

        log("1. a migrate request in plain bytes, no handshake")
        with socket.create_connection(a.rsplit(":", 1), timeout=WAIT) as sock:
            sock.settimeout(WAIT)
            sock.sendall(frame(TYPE_MIGRATE, ("to=" + b).encode()))
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            check(data == b"", "the server answered %r to plain bytes" % data[:60])
        log("    closed without an answer")

        log("2. roamctl with a key that is not an operator")
        stranger = pool.stranger_operator()
        result = harness.roamctl("migrate", "--from", a, "--to", b, "--key", stranger)
        check(result.returncode == 1 and result.stdout.startswith("error not authorized"),
              "migrate with a stranger's key: exit %d %r" % (result.returncode, result.stdout))
        log("    migrate: %s" % result.stdout.strip())
        result = harness.roamctl("status", "--server", a, "--key", stranger)
        check(result.returncode == 1 and result.stdout.startswith("error not authorized"),
              "status with a stranger's key: exit %d %r" % (result.returncode, result.stdout))
        log("    status: %s" % result.stdout.strip())

        log("3. a pool member that is not an operator asks for a move")
        key, cert, _ = pool.server("F")
        with SecureControl(a, key, cert, timeout=WAIT) as sock:
            sock.sendall(frame(TYPE_MIGRATE, ("to=" + b).encode()))
            expect_not_authorized(sock, "member's migrate request")

        log("4. the operator (not a pool member) sends a session frame")
        with SecureControl(b, pool.operator_key, None, timeout=WAIT) as sock:
            sock.sendall(frame(TYPE_SESSION, b"\x04echo\x00" + b"RSNP" + b"\x00" * 40))
            expect_not_authorized(sock, "operator's session frame")

        log("5. a session frame from a key without a certificate")
        with SecureControl(b, None, None, timeout=WAIT) as sock:
            sock.sendall(frame(TYPE_SESSION, b"\x04echo\x00" + b"RSNP" + b"\x00" * 40))
            expect_not_authorized(sock, "anonymous session frame")

        log("6. migrate A -> M, a member of another pool")
        m_key, m_cert, _ = pool.outsider("M")
        m_control = "127.0.0.1:%d" % harness.free_tcp_port()
        m = harness.RoamProcess("server", [
            harness.ROAM_SERVER, "--link", "udp:127.0.0.1:%d" % harness.free_udp_port(), "--addr", "198.18.14.2",
            "--route", "198.18.11.0/24=127.0.0.1:%d" % harness.free_udp_port(), "--control", m_control, "--key", m_key, "--pool-cert", m_cert, "--operators", pool.operators, "echo"],
            name="server-M")
        check(m.wait_for_log("[app] serving "), "server M did not start\n" + m.tail())
        result = harness.roamctl("migrate", "--from", a, "--to", m_control)
        check(result.returncode == 1 and "not a member of this pool" in result.stdout,
              "migrate to another pool's member: exit %d %r" % (result.returncode, result.stdout))
        log("    %s" % result.stdout.strip())
        m_status = harness.roamctl("status", "--server", m_control)
        check('"sessions_imported":0' in m_status.stdout.replace(" ", ""), "M imported: %s" % m_status.stdout)
        still_echoes(live, "after the refused moves, on A")
        check(t.status("A")["sessions"] == 1, "A lost its session")

        log("7. a half-open handshake is closed by the handshake timeout")
        with socket.create_connection(a.rsplit(":", 1), timeout=WAIT) as sock:
            sock.settimeout(WAIT)
            started = time.monotonic()
            try:
                data = sock.recv(4096)
            except ConnectionResetError:
                data = b""
            check(data == b"", "got %r on a silent connection" % data[:40])
        log("    closed after %.1f s (information only)" % (time.monotonic() - started))

        log("8. a server whose --pool-cert certifies another key does not start")
        wrong = subprocess.run([harness.ROAM_SERVER, "--link", "udp:127.0.0.1:%d" % harness.free_udp_port(),
                                "--addr", "198.18.15.2",
                                "--route", "198.18.11.0/24=127.0.0.1:%d" % harness.free_udp_port(), "--control", "127.0.0.1:%d" % harness.free_tcp_port(),
                                "--key", pool.server("A")[0], "--pool-cert", m_cert, "echo"],
                               capture_output=True, text=True, timeout=WAIT)
        check(wrong.returncode != 0 and "not this server's --key" in wrong.stderr,
              "roam-server with another key's certificate: exit %d, stderr %r" % (wrong.returncode, wrong.stderr))
        log("    %s" % wrong.stderr.strip().splitlines()[-1])

        after_a = t.status("A")
        log("    A: control_refused %d handshake_failed %d timeouts %d targets_refused %d" % (
            after_a["control_refused"], after_a["control_handshake_failed"], after_a["control_handshake_timeouts"],
            after_a["targets_refused"]))
        check(after_a["control_refused"] - before_a["control_refused"] == 3,
              "A counted %d refusals, expected 3" % (after_a["control_refused"] - before_a["control_refused"]))
        check(after_a["control_handshake_failed"] > before_a["control_handshake_failed"],
              "A did not count the plain-bytes connection")
        check(after_a["control_handshake_timeouts"] > before_a["control_handshake_timeouts"],
              "A did not count the handshake timeout")
        check(after_a["targets_refused"] == before_a["targets_refused"] + 1, "A targets_refused %d" %
              after_a["targets_refused"])
        check(after_a["sessions_exported"] == 0, "A exported a session during the attacks")
        status_b = t.status("B")
        check(status_b["control_refused"] == 2 and status_b["sessions_imported"] == 0,
              "B: control_refused %d sessions_imported %d" % (status_b["control_refused"],
                                                             status_b["sessions_imported"]))

        log("then the genuine move A -> B")
        t.migrate("A", "B", expect_moved=1)
        still_echoes(live, "on B")
        live.close()
        m.stop()
        results = t.stop_all()
    log("PASS control_auth_test.py")


if __name__ == "__main__":
    harness.run(main)
