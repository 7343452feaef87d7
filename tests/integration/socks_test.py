#!/usr/bin/env python3
"""SOCKS5 on roam-client (-D, issue 15): curl --socks5-hostname through the client, a
server move under a live SOCKS connection, and bad input answered and counted.

1. Pair (relay to a python http.server on loopback), client with -D, --socks-auth and
   --socks-hosts (web.roam -> the server): `curl --socks5-hostname` with the right
   credentials fetches a file (8 MiB x ROAMSTACK_TEST_SCALE, at least 256 KiB) byte-exact;
   with a wrong password curl fails and the client answered RFC 1929 failure.
   By hand: a SOCKS4 greeting (05 FF), only "no auth" offered while auth is required (05 FF),
   BIND (07), an unknown address type (08), an unknown name (04), an address outside the
   overlay routes (03), a port nothing listens on there (05), a request cut short by the
   client closing. The client's exit line counts each.
2. TwoServers (echo), client with -D and no auth: a SOCKS connection to a.roam (server A)
   echoes, `roamctl migrate A->B` moves it, it echoes on byte-exact; a new SOCKS connection
   to a.roam goes to B (the move is followed), and B then holds both sessions.
3. OpenSSH through -D: Debian's sshd on a loopback port of its own (keys and config in the
   test's directory, no system configuration read), the server relays to it, and
   `ssh -o ProxyCommand='nc -X 5 -x 127.0.0.1:PORT %h %p' -p 7000 ssh.roam` (netcat-openbsd)
   runs a command; its output is checked and the host key is the test's (StrictHostKeyChecking).
   Needs root (sshd's privilege separation): as another user this part fails, as CI is root.
"""
import functools
import http.server
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402
import sshd_lab  # noqa: E402


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise TestFailure("connection closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def recv_all(sock):
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk


def socks_connect(port, host, dport, auth=None):
    """A SOCKS5 CONNECT by hand; returns (socket, reply code)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=harness.IO_TIMEOUT)
    sock.settimeout(harness.IO_TIMEOUT)
    sock.sendall(b"\x05\x01" + (b"\x02" if auth else b"\x00"))
    method = recv_exact(sock, 2)
    check(method == (b"\x05\x02" if auth else b"\x05\x00"), "method answer %r" % method)
    if auth:
        user, password = (x.encode() for x in auth)
        sock.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        check(recv_exact(sock, 2) == b"\x01\x00", "credentials refused")
    try:
        address = socket.inet_aton(host)
        sock.sendall(b"\x05\x01\x00\x01" + address + struct.pack("!H", dport))
    except OSError:
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host.encode() + struct.pack("!H", dport))
    head = recv_exact(sock, 4)
    check(head[0] == 5, "reply version %d" % head[0])
    recv_exact(sock, (4 if head[3] == 1 else 16) + 2)
    return sock, head[1]


def exchange(port, payload):
    """Sends raw bytes, returns everything the client answered before closing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=harness.IO_TIMEOUT)
    sock.settimeout(harness.IO_TIMEOUT)
    sock.sendall(payload)
    try:
        return recv_all(sock)
    finally:
        sock.close()


def exit_counters(client):
    match = None
    for match in re.finditer(r"socks5: accepted (\d+), connected (\d+)(.*)", client.stderr_text()):
        pass
    check(match is not None, "no socks5 counters line at the client's exit\n" + client.tail())
    counters = {"accepted": int(match.group(1)), "connected": int(match.group(2))}
    for name, value in re.findall(r", (\w+) (\d+)", match.group(3)):
        counters[name] = int(value)
    return counters


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def part_one(work):
    size = harness.scaled(8 << 20, 256 << 10, multiple=64 << 10)
    body = harness.pseudo_random_bytes(15, size)
    root = os.path.join(work, "www")
    os.mkdir(root)
    with open(os.path.join(root, "blob"), "wb") as f:
        f.write(body)
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=root))
    threading.Thread(target=web.serve_forever, daemon=True).start()
    hosts = os.path.join(work, "hosts")
    with open(hosts, "w") as f:
        f.write("# overlay names\n%s web.roam Web.Alias\n" % harness.SERVER_ADDR)
    auth = os.path.join(work, "users")
    with open(auth, "w") as f:
        f.write("# user password\nalice open sesame\n")
    os.chmod(auth, 0o600)
    socks = harness.free_tcp_port()
    try:
        pair = harness.Pair(mode="relay", backend="127.0.0.1:%d" % web.server_address[1],
                            client_extra=["-D", "127.0.0.1:%d" % socks, "--socks-auth", auth,
                                          "--socks-hosts", hosts])
        with pair:
            check(pair.client.wait_for_log("[app] socks5 on 127.0.0.1:%d" % socks), "no socks5 line")
            curl = subprocess.run(
                ["curl", "-sS", "--fail", "--max-time", "120", "--socks5-hostname", "127.0.0.1:%d" % socks,
                 "--proxy-user", "alice:open sesame", "http://web.roam:7000/blob"],
                capture_output=True, timeout=150)
            check(curl.returncode == 0, "curl through -D failed: exit %d %s\n%s" % (
                curl.returncode, curl.stderr.decode(errors="replace"), pair.client.tail()))
            check(curl.stdout == body, "curl got %d bytes, not the %d-byte file byte-exact" % (
                len(curl.stdout), len(body)))
            log("curl --socks5-hostname web.roam: %d bytes byte-exact" % len(body))
            bad = subprocess.run(
                ["curl", "-sS", "--max-time", "30", "--socks5-hostname", "127.0.0.1:%d" % socks,
                 "--proxy-user", "alice:wrong", "http://web.roam:7000/blob"], capture_output=True, timeout=60)
            check(bad.returncode != 0 and bad.stdout == b"", "curl with a wrong password got through")
            answer = exchange(socks, b"\x05\x01\x02\x01\x05alice\x05wrong")
            check(answer == b"\x05\x02\x01\x01", "a wrong password was answered %r" % answer)
            check(exchange(socks, b"\x04\x01\x00\x50\x01\x02\x03\x04\x00") == b"\x05\xff", "SOCKS4 not refused")
            check(exchange(socks, b"\x05\x01\x00") == b"\x05\xff", "no-auth accepted although auth is required")
            cred = b"\x05\x01\x02\x01\x05alice\x0bopen sesame"
            answers = {
                "BIND": (b"\x05\x02\x00\x01\xc6\x12\x0c\x02\x1b\x58", 7),
                "unknown address type": (b"\x05\x01\x00\x09\x00\x00", 8),
                "unknown name": (b"\x05\x01\x00\x03\x08nope.roa\x1b\x58", 4),
                "outside the overlay": (b"\x05\x01\x00\x01\xc6\x13\x63\x01\x1b\x58", 3),
                "nothing listening": (b"\x05\x01\x00\x03\x08web.roam\x00\x63", 5),
            }
            for what, (request, code) in answers.items():
                answer = exchange(socks, cred + request)
                check(answer[:4] == b"\x05\x02\x01\x00", "%s: handshake answered %r" % (what, answer[:4]))
                check(len(answer) >= 6 and answer[4] == 5 and answer[5] == code,
                      "%s: answered %r, expected reply %d" % (what, answer[4:], code))
            cut = socket.create_connection(("127.0.0.1", socks), timeout=harness.IO_TIMEOUT)
            cut.sendall(cred + b"\x05\x01\x00\x03\x08web")
            check(recv_exact(cut, 4) == b"\x05\x02\x01\x00", "handshake before the cut request")
            cut.close()
            log("bad input answered: SOCKS4, no acceptable method, bad password, BIND, ATYP 9, unknown name, "
                "outside the overlay, refused")
            pair.stop_all()
            counters = exit_counters(pair.client)
            log("client counters: %s" % counters)
            expected = {"connected": 1, "bad_credentials": 2, "malformed": 1, "no_acceptable_method": 1,
                        "command_not_supported": 1, "address_type_not_supported": 1, "unresolved": 1,
                        "not_carried": 1, "refused": 1, "client_gone": 1}
            for name, want in expected.items():
                check(counters.get(name) == want, "counter %s is %s, expected %d (%s)" % (
                    name, counters.get(name), want, counters))
    finally:
        web.shutdown()


def part_two(work):
    hosts = os.path.join(work, "hosts2")
    with open(hosts, "w") as f:
        f.write("%s a.roam\n" % harness.SERVER_ADDR)
    socks = harness.free_tcp_port()
    with harness.TwoServers(mode="echo", client_extra=["-D", str(socks), "--socks-hosts", hosts]) as t:
        first, code = socks_connect(socks, "a.roam", 7000)
        check(code == 0, "CONNECT a.roam:7000 answered %d" % code)
        harness.echo_round_trip(first, 64 * 1024, "SOCKS connection on A")
        t.wait_for_sessions("A", 1)
        t.migrate("A", "B", expect_moved=1)
        harness.echo_round_trip(first, 256 * 1024, "SOCKS connection after the move to B")
        check(t.client.wait_for_log("new connections go to %s:7000" % t.address["B"]), "the move was not followed")
        second, code = socks_connect(socks, "a.roam", 7000)
        check(code == 0, "CONNECT a.roam:7000 after the move answered %d" % code)
        harness.echo_round_trip(second, 4096, "new SOCKS connection after the move")
        t.wait_for_sessions("B", 2)
        check(t.status("A")["sessions"] == 0, "the new SOCKS connection went to A")
        log("SOCKS connection moved A->B byte-exact; a new one to a.roam went to B")
        first.close()
        second.close()
        t.wait_for_sessions("B", 0)
        t.stop_all()


def part_three(work):
    for tool in (sshd_lab.SSHD, "ssh", "ssh-keygen", "nc"):
        check(shutil.which(tool) is not None, "%s is missing (tools/setup installs openssh and netcat-openbsd)"
              % tool)
    check(os.geteuid() == 0, "sshd needs root (privilege separation); CI runs this test as root")
    hosts = os.path.join(work, "hosts3")
    with open(hosts, "w") as f:
        f.write("%s ssh.roam\n" % harness.SERVER_ADDR)
    socks = harness.free_tcp_port()
    with sshd_lab.Sshd(work, "[ssh.roam]:7000") as sshd, \
            harness.Pair(mode="relay", backend="127.0.0.1:%d" % sshd.port,
                         client_extra=["-D", "127.0.0.1:%d" % socks, "--socks-hosts", hosts]) as pair:
        check(pair.client.wait_for_log("[app] socks5 on 127.0.0.1:%d" % socks), "no socks5 line")
        word = os.urandom(8).hex()
        ssh = subprocess.run(
            sshd.ssh_argv(["-o", "ProxyCommand=nc -X 5 -x 127.0.0.1:%d %%h %%p" % socks, "-p", "7000",
                           "%s@ssh.roam" % sshd.user, "echo roam-$((6 * 7))-%s" % word]),
            capture_output=True, text=True, timeout=120)
        check(ssh.returncode == 0 and ssh.stdout == "roam-42-%s\n" % word,
              "ssh through -D: exit %d, stdout %r, stderr %r\n%s" % (
                  ssh.returncode, ssh.stdout, ssh.stderr[-800:], pair.client.tail()))
        log("ssh -o ProxyCommand='nc -X 5 ...' through -D ran a command on sshd behind the server")
        pair.stop_all()


def main():
    check(shutil.which("curl") is not None, "curl is missing (tools/setup installs it)")
    work = tempfile.mkdtemp(prefix="roam-socks-")
    try:
        part_one(work)
        part_two(work)
        part_three(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    harness.run(main)
