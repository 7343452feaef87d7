#!/usr/bin/env python3
"""Bad input on the migration paths: forged session frames, broken framing, unreachable or
misbehaving targets, and bad roamctl command lines.

Topology (harness.TwoServers, mode echo): servers A and B; one live echo connection on A
(the client's forward) is kept through the whole test.

(a) Session frames sent straight to B's control port
    (frame = u32 big-endian payload length | u8 type 2 | payload; payload version 2 =
     u8 0 | u8 2 | u8 kind length | kind | u8 leg count | per leg: u8 role | u8 token
     length | token | u32 snapshot length | snapshot; docs/PROTOCOL.md 4.3):
    empty payload; kind only; a version-1 payload; bad leg counts, roles and tokens; "echo"
    + random bytes; "echo" + "RSNP" version 1 truncated (inside the header, and with a body
    length beyond the bytes sent); "RSNP" version 2; "nosuchapp" + garbage; and snapshots
    that decode (built here from the layout in stack/wire/connection_snapshot.hpp) but must
    still be refused: kind "nosuchapp", kind "echo" with a bad app state, kind "files" on
    an echo server, an IPv6 flow on a server without IPv6, connection id 0, two legs with
    one id, an echo session as an origin leg or with two legs. Each frame on its own connection, then all of them pipelined on one.
    Each must be answered with a session_result frame (type 3) whose first byte is 0; B's
    status must then count imports_refused == frames sent, with 0 sessions and 0 parked.
(b) Broken framing on B's control port: an unknown frame type (9) and an oversized length
    close the connection; a frame type the control port does not take (4, reply) is
    answered "error ..." and closed (bad_frames counts it); a frame cut short by the peer's
    close. B keeps running and keeps its counters.
(c) `roamctl migrate` from A to a port where nothing listens, and to a "server" that
    accepts and closes without answering: exit 1 with one "error" line, and the live
    connection still echoes on A (the failed migration left it on its old path). Then a
    normal migrate A -> B of that live connection succeeds ("ok moved 1 of 1") and it
    echoes from B: B still works after everything above.
(d) roamctl with bad arguments: exit 2, exactly one "roamctl: ..." line on stderr, nothing
    on stdout; --help exits 0 with "Usage:".
"""
import os
import random
import socket
import struct
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402
from control_port import SecureControl, frame  # noqa: E402

TYPE_SESSION = 2
TYPE_SESSION_RESULT = 3
TYPE_REPLY = 4
REPLY_TIMEOUT = 30.0


# ------------------------------------------------------------- frames and snapshots

ROLE_CLIENT = 1
ROLE_ORIGIN = 2


def session_payload_legs(kind, legs):
    """Version 2: u8 0 | u8 2 | u8 kind length | kind | u8 leg count | legs; each leg
    (role, token, snapshot) as u8 role | u8 token length | token | u32 length | snapshot."""
    kind = kind.encode()
    out = bytes([0, 2, len(kind)]) + kind + bytes([len(legs)])
    for role, token, snap in legs:
        out += bytes([role, len(token)]) + token + struct.pack("!I", len(snap)) + snap
    return out


def session_payload(kind, snapshot, token=b"", role=ROLE_CLIENT):
    """One leg."""
    return session_payload_legs(kind, [(role, token, snapshot)])


def snapshot(version=4, app_state=b"", local_port=7000, remote_port=40000, connection_id=0x1122334455667788):
    """A snapshot that decode_snapshot accepts (layout: stack/wire/connection_snapshot.hpp)
    for a flow that does not exist: client 198.18.11.2:40000 -> server port 7000."""
    if version == 4:
        local, remote = socket.inet_aton(harness.SERVER_ADDR), socket.inet_aton(harness.CLIENT_ADDR)
    else:
        local, remote = socket.inet_pton(socket.AF_INET6, "fd00::2"), socket.inet_pton(socket.AF_INET6, "fd00::1")
    body = struct.pack("!B", version) + local + remote
    body += struct.pack("!HHQB", local_port, remote_port, connection_id, 1)           # ports, id, established
    body += struct.pack("!8IHBhhh", 1000, 1000, 65535, 65535, 5000, 1000, 14600, 65535, 1460, 0, 0, 0, 6)
    body += struct.pack("!4IB", 5000, 65535, 65535, 5000 + 65535, 0)                   # receive state
    body += struct.pack("!B3IBB", 0x01, 0, 0, 0, 0, 64)                                # options
    for part in (b"", b"", b"", app_state):                                            # unacked, unsent, received, app
        body += struct.pack("!I", len(part)) + part
    expected = 111 if version == 4 else 135
    assert len(body) == expected + len(app_state), (len(body), expected)
    return b"RSNP" + struct.pack("!HHI", 1, 0, len(body)) + body


def forged_cases():
    """(description, session payload, decodes) — `decodes`: the snapshot itself is valid."""
    rng = random.Random(0xBAD5)
    valid_echo = snapshot(app_state=b"\x00")
    return [
        ("empty payload", b"", False),
        ("kind only ('echo', no snapshot)", session_payload("echo", b""), False),
        ("'echo' + a 5-byte handover token", session_payload("echo", valid_echo, token=b"12345"), False),
        ("'echo' + token length 32 but the frame ends", bytes([0, 2, 4]) + b"echo" + bytes([1, 1, 32]) + b"short",
         False),
        ("kind length beyond the payload", b"\x00\x02\x20echo", False),
        ("a version-1 payload ('echo', no token, a valid snapshot)", bytes([4]) + b"echo" + bytes([0]) + valid_echo,
         False),
        ("version 3", b"\x00\x03" + session_payload("echo", valid_echo)[2:], False),
        ("no legs", session_payload_legs("echo", []), False),
        ("9 legs", session_payload_legs("echo", [(ROLE_CLIENT, b"", valid_echo)] * 9), False),
        ("a leg of role 3", session_payload("echo", valid_echo, role=3), False),
        ("an origin leg with a handover token", session_payload("echo", valid_echo, token=bytes(32), role=ROLE_ORIGIN),
         False),
        ("snapshot length beyond the payload", session_payload("echo", valid_echo)[:-1], False),
        ("'echo' + 300 random bytes", session_payload("echo", rng.randbytes(300)), False),
        ("'echo' + RSNP v1 cut inside the header", session_payload("echo", b"RSNP\x00\x01\x00"), False),
        ("'echo' + RSNP v1, body length beyond the bytes sent",
         session_payload("echo", valid_echo[:len(valid_echo) // 2]), False),
        ("'echo' + RSNP v1, last byte cut", session_payload("echo", valid_echo[:-1]), False),
        ("'echo' + RSNP v1 + a trailing byte", session_payload("echo", valid_echo + b"\x00"), False),
        ("'echo' + RSNP version 2", session_payload("echo", b"RSNP\x00\x02" + valid_echo[6:]), False),
        ("'echo' + RSNP v1, 100 random body bytes",
         session_payload("echo", b"RSNP" + struct.pack("!HHI", 1, 0, 100) + rng.randbytes(100)), False),
        ("'nosuchapp' + garbage", session_payload("nosuchapp", rng.randbytes(64)), False),
        ("valid snapshot, kind 'nosuchapp'", session_payload("nosuchapp", valid_echo), True),
        ("valid snapshot, kind 'echo', app state 7", session_payload("echo", snapshot(app_state=b"\x07")), True),
        ("valid snapshot, kind 'echo', no app state", session_payload("echo", snapshot(app_state=b"")), True),
        ("valid snapshot, kind 'files' on an echo server",
         session_payload("files", snapshot(app_state=b"\x01\x01\x03abc" + bytes(16))), True),
        ("valid IPv6 snapshot, server without IPv6", session_payload("echo", snapshot(version=6, app_state=b"\x00")),
         True),
        ("valid snapshot, connection id 0", session_payload("echo", snapshot(app_state=b"\x00", connection_id=0)), True),
        ("two legs with one connection id",
         session_payload_legs("echo", [(ROLE_CLIENT, b"", valid_echo),
                                       (ROLE_ORIGIN, b"", snapshot(app_state=b"\x00", remote_port=40001))]), True),
        ("an echo session as an origin leg", session_payload("echo", valid_echo, role=ROLE_ORIGIN), True),
        ("an echo session with two legs",
         session_payload_legs("echo", [(ROLE_CLIENT, b"", valid_echo),
                                       (ROLE_ORIGIN, b"", snapshot(app_state=b"\x00", remote_port=40001,
                                                                   connection_id=0x99))]), True),
    ]


def read_exactly(sock, n):
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            return None
        data += part
    return data


def read_frame(sock):
    """(type, payload), or None on EOF before a whole frame."""
    header = read_exactly(sock, 5)
    if header is None:
        return None
    length, frame_type = struct.unpack("!IB", header)
    payload = read_exactly(sock, length)
    if payload is None:
        return None
    return frame_type, payload


def control_connection(address):
    """A control-port connection as a pool member "F" (a member that sends garbage: the
    importer itself must refuse it), through the independent client in control_port.py."""
    key, cert, _ = harness.lab_pool().server("F")
    return SecureControl(address, key, cert, timeout=REPLY_TIMEOUT)


def expect_refused(sock, description):
    try:
        reply = read_frame(sock)
    except socket.timeout:
        raise TestFailure("%s: no answer within %.0f s" % (description, REPLY_TIMEOUT))
    except ConnectionResetError:
        raise TestFailure("%s: the control connection was reset instead of answered" % description)
    check(reply is not None, "%s: the control connection closed without an answer" % description)
    frame_type, payload = reply
    check(frame_type == TYPE_SESSION_RESULT, "%s: answered with frame type %d, expected %d (session_result)"
          % (description, frame_type, TYPE_SESSION_RESULT))
    check(len(payload) >= 1 and payload[0] == 0, "%s: session_result payload %r, expected a refusal (first byte 0)"
          % (description, payload[:80]))
    return payload[1:].decode("utf-8", "replace")


def expect_closed(sock, description):
    """The server closes the connection: EOF or reset, within the timeout, and no frame."""
    try:
        data = sock.recv(4096)
    except ConnectionResetError:
        return "reset"
    except socket.timeout:
        raise TestFailure("%s: the connection is still open after %.0f s" % (description, REPLY_TIMEOUT))
    check(data == b"", "%s: got %r instead of the connection closing" % (description, data[:80]))
    return "EOF"


# ------------------------------------------------------------- helpers

class SilentTarget:
    """A kernel TCP listener that plays a broken migration target: accepts, reads a little,
    and closes without answering."""

    def __init__(self):
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.address = "127.0.0.1:%d" % self.listener.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._serve, name="silent-target", daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(5)
            try:
                conn.recv(5)
            except OSError:
                pass
            conn.close()

    def close(self):
        self.listener.close()


class HangingTarget(SilentTarget):
    """Accepts and reads everything, never answers, never closes (until the test ends)."""

    def _serve(self):
        self.connections = []
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            self.connections.append(conn)
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn):
        try:
            while conn.recv(1 << 16):
                pass
        except OSError:
            pass

    def close(self):
        super().close()
        for conn in getattr(self, "connections", []):
            conn.close()


# ------------------------------------------------------------- the parts

def forged_session_frames(t):
    cases = forged_cases()
    log("(a) %d forged session frames to B's control port, each on its own connection" % len(cases))
    for description, payload, decodes in cases:
        with control_connection(t.controls["B"]) as sock:
            sock.sendall(frame(TYPE_SESSION, payload))
            reason = expect_refused(sock, description)
        log("    refused  %-52s %s" % (description, reason))
        if decodes:
            # Self-check of the snapshot builder: these must get past the snapshot decoder.
            check("bad snapshot" not in reason and "malformed" not in reason,
                  "%s: refused as %r; the test's snapshot builder no longer matches the wire layout"
                  % (description, reason))
    log("(a) the same %d frames pipelined on one connection" % len(cases))
    with control_connection(t.controls["B"]) as sock:
        sock.sendall(b"".join(frame(TYPE_SESSION, payload) for _, payload, _ in cases))
        for description, _, _ in cases:
            expect_refused(sock, "pipelined: " + description)
    sent = 2 * len(cases)
    status = t.status("B")
    log("    B status: %s" % status)
    check(status["imports_refused"] == sent, "B imports_refused %d, expected %d" % (status["imports_refused"], sent))
    check(status["sessions"] == 0, "B holds %d sessions after refusing everything" % status["sessions"])
    check(status["parked"] == 0, "B has %d parked flows after refusing everything" % status["parked"])
    check(status["sessions_imported"] == 0, "B imported %d sessions from forged frames" % status["sessions_imported"])
    return sent


def broken_framing(t, refused):
    log("(b) broken framing on B's control port")
    before = t.status("B")
    with control_connection(t.controls["B"]) as sock:
        sock.sendall(frame(11, b"hello"))
        how = expect_closed(sock, "unknown frame type 11")
    log("    unknown frame type 11: closed (%s)" % how)
    with control_connection(t.controls["B"]) as sock:
        sock.sendall(struct.pack("!IB", 0xFFFFFFFF, TYPE_SESSION) + b"x" * 64)
        how = expect_closed(sock, "frame length 0xFFFFFFFF")
    log("    frame length 0xFFFFFFFF: closed (%s)" % how)
    with control_connection(t.controls["B"]) as sock:
        sock.sendall(frame(TYPE_REPLY, b"ok moved 1 of 1"))
        reply = read_frame(sock)
        check(reply is not None and reply[0] == TYPE_REPLY and reply[1].startswith(b"error"),
              "a reply frame sent to the control port: answered %r, expected a reply frame 'error ...'" % (reply,))
        how = expect_closed(sock, "reply frame sent to the control port")
    log("    reply frame (type 4) to the control port: answered %r, then closed (%s)" % (reply[1].decode(), how))
    with control_connection(t.controls["B"]) as sock:
        sock.sendall(struct.pack("!IB", 100, TYPE_SESSION) + b"cut short")
    log("    a session frame cut short by our close: sent")
    check(t.servers["B"].alive(), "B died on broken framing\n" + t.servers["B"].tail())
    after = t.status("B")
    log("    B status: %s" % after)
    check(after["bad_frames"] == before["bad_frames"] + 1,
          "B bad_frames %d, expected %d (one reply frame sent to it)" % (after["bad_frames"], before["bad_frames"] + 1))
    check(after["imports_refused"] == refused and after["sessions"] == 0 and after["sessions_imported"] == 0,
          "B's import counters changed on broken framing: %s" % after)


def failed_migrations(t, live):
    log("(c) migrations that cannot happen leave the live connection on A")
    dead = "127.0.0.1:%d" % harness.free_tcp_port()
    result = harness.roamctl("migrate", "--from", t.controls["A"], "--to", dead)
    lines = result.stdout.splitlines()
    log("    to %s (nothing listens): exit %d, %r" % (dead, result.returncode, result.stdout.strip()))
    check(result.returncode == 1, "roamctl migrate to a dead port: exit %d, expected 1" % result.returncode)
    check(len(lines) == 1 and lines[0].startswith("error"),
          "roamctl migrate to a dead port: stdout %r, expected one 'error ...' line" % result.stdout)
    harness.echo_round_trip(live, b"still here after a failed migration\n", "after the migration to a dead port")
    status = t.status("A")
    check(status["sessions"] == 1 and status["sessions_exported"] == 0,
          "A after the failed migration: %s (expected 1 session, 0 exported)" % status)

    result = harness.roamctl("migrate", "--from", dead, "--to", t.controls["B"])
    log("    from %s (nothing listens): exit %d, %r" % (dead, result.returncode, result.stdout.strip()))
    check(result.returncode == 1 and result.stdout.startswith("error") and len(result.stdout.splitlines()) == 1,
          "roamctl migrate from a dead port: exit %d, stdout %r" % (result.returncode, result.stdout))

    target = SilentTarget()
    try:
        result = harness.roamctl("migrate", "--from", t.controls["A"], "--to", target.address)
    finally:
        target.close()
    log("    to %s (accepts, closes without answering): exit %d, %r" % (
        target.address, result.returncode, result.stdout.strip()))
    check(target.accepted >= 1, "A never connected to the silent target")
    check(result.returncode == 1 and result.stdout.startswith("error") and len(result.stdout.splitlines()) == 1,
          "roamctl migrate to a target that closes: exit %d, stdout %r, expected one 'error ...' line"
          % (result.returncode, result.stdout))
    harness.echo_round_trip(live, b"still here after the target hung up\n", "after the migration to a target that closed")
    status = t.status("A")
    log("    A status: %s" % status)
    check(status["sessions"] == 1 and status["sessions_exported"] == 0,
          "A after the failed migrations: %s (expected 1 session, 0 exported)" % status)

    target = HangingTarget()
    try:
        result = harness.roamctl("migrate", "--from", t.controls["A"], "--to", target.address)
    finally:
        target.close()
    log("    to %s (accepts, never answers; A has --move-timeout 1): exit %d, %r" % (
        target.address, result.returncode, result.stdout.strip()))
    check(result.returncode == 1 and "no complete answer within 1 s" in result.stdout,
          "roamctl migrate to a target that never answers: exit %d, stdout %r" % (result.returncode, result.stdout))
    harness.echo_round_trip(live, b"still here after the target hung\n", "after the migration to a target that hung")
    status = t.status("A")
    check(status["sessions"] == 1 and status["moves_timed_out"] == 1,
          "A after the timed-out move: %s (expected 1 session, 1 move timed out)" % status)

    moved = t.migrate("A", "B", expect_moved=1)
    log("    then A -> B: ok moved %d of %d to %s in %.3f ms" % moved)
    harness.echo_round_trip(live, b"served by B now\n", "after the move to B")
    status = t.status("B")
    log("    B status: %s" % status)
    check(status["sessions_imported"] == 1 and status["sessions"] == 1,
          "B after the move: %s (expected 1 imported, 1 session)" % status)


def roamctl_bad_arguments(t):
    log("(d) roamctl bad command lines")
    a, b = t.controls["A"], t.controls["B"]
    table = [
        ("no arguments", []),
        ("unknown command", ["frobnicate"]),
        ("migrate without options", ["migrate"]),
        ("migrate without --to", ["migrate", "--from", a]),
        ("migrate without --from", ["migrate", "--to", b]),
        ("migrate --from with no value", ["migrate", "--to", b, "--from"]),
        ("migrate unknown option", ["migrate", "--from", a, "--to", b, "--frobnicate", "1"]),
        ("migrate --count abc", ["migrate", "--from", a, "--to", b, "--count", "abc"]),
        ("migrate --count -1", ["migrate", "--from", a, "--to", b, "--count", "-1"]),
        ("migrate --timeout 0", ["migrate", "--from", a, "--to", b, "--timeout", "0"]),
        ("migrate --timeout abc", ["migrate", "--from", a, "--to", b, "--timeout", "abc"]),
        ("migrate --from not HOST:PORT", ["migrate", "--from", "nowhere", "--to", b]),
        ("migrate --to not HOST:PORT", ["migrate", "--from", a, "--to", "nowhere"]),
        ("status without --server", ["status"]),
        ("status --server not HOST:PORT", ["status", "--server", "127.0.0.1"]),
    ]
    failures = []
    for description, args in table:
        result = harness.roamctl(*args)
        lines = result.stderr.splitlines()
        problems = []
        if result.returncode != 2:
            problems.append("exit %d, expected 2" % result.returncode)
        if len(lines) != 1:
            problems.append("%d stderr lines, expected exactly 1" % len(lines))
        elif not lines[0].startswith("roamctl:"):
            problems.append("stderr does not start with 'roamctl:'")
        if result.stdout:
            problems.append("stdout %r, expected nothing" % result.stdout[:200])
        if problems:
            failures.append("%s\n      $ roamctl %s\n      -> %s\n      stderr: %r" % (
                description, " ".join(args), "; ".join(problems), result.stderr[-300:]))
            log("    FAIL  %-34s %s" % (description, "; ".join(problems)))
        else:
            log("    ok    %-34s %s" % (description, lines[0]))
    for flag in ("--help", "-h"):
        result = harness.roamctl(flag)
        if result.returncode != 0 or "Usage:" not in result.stdout:
            failures.append("roamctl %s: exit %d, stdout %r" % (flag, result.returncode, result.stdout[:200]))
            log("    FAIL  roamctl %s" % flag)
        else:
            log("    ok    roamctl %s exits 0 with Usage:" % flag)
    # Nothing of the above may have touched the servers.
    for name in ("A", "B"):
        check(t.servers[name].alive(), "server %s died during the roamctl cases" % name)
    return failures


def main():
    with harness.TwoServers(mode="echo", server_extra=["--move-timeout", "1"]) as t:
        live = t.connect()
        harness.echo_round_trip(live, b"hello before anything\n", "first echo")
        refused = forged_session_frames(t)
        broken_framing(t, refused)
        harness.echo_round_trip(live, b"A unaffected by B's bad input\n", "after (a) and (b)")
        failed_migrations(t, live)
        failures = roamctl_bad_arguments(t)
        harness.echo_round_trip(live, b"goodbye\n", "last echo")
        live.close()
        t.wait_for_sessions("B", 0)
        t.stop_all()
    if failures:
        raise TestFailure("%d roamctl invocation(s) misbehaved:\n  - %s" % (len(failures), "\n  - ".join(failures)))


if __name__ == "__main__":
    harness.run(main)
