#!/usr/bin/env python3
"""Bad command lines: each invocation in the table must exit with code 2 and print exactly
one line on stderr, starting with "roam-server:" or "roam-client:" (no traceback, no abort,
no sanitizer report, no log lines around it). --help / -h must exit 0 and print "Usage:".

A process that accepts a bad command line and keeps running is killed after a timeout and
counts as a failure. All cases run; the failures are listed together at the end.
"""
import os
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, log  # noqa: E402

RUN_TIMEOUT = 30.0


def run_program(argv):
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=RUN_TIMEOUT,
                              preexec_fn=harness._die_with_parent)
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        # subprocess.run kills and reaps the child on timeout
        return None, (e.stdout or b"").decode("utf-8", "replace"), (e.stderr or b"").decode("utf-8", "replace")


def cases():
    """(description, program name, argv after the program)."""
    s_udp, c_udp, fwd = harness.free_udp_port(), harness.free_udp_port(), harness.free_tcp_port()
    s_link = ["--link", "udp:127.0.0.1:%d" % s_udp]
    c_link = ["--link", "udp:127.0.0.1:%d" % c_udp]
    s_addr = ["--addr", harness.SERVER_ADDR]
    c_addr = ["--addr", harness.CLIENT_ADDR]
    s_route = ["--route", "%s=127.0.0.1:%d" % (harness.CLIENT_NET, c_udp)]
    c_route = ["--route", "%s=127.0.0.1:%d" % (harness.SERVER_NET, s_udp)]
    server_base = s_link + s_addr + s_route
    client_base = c_link + c_addr + c_route
    forward = ["-L", "127.0.0.1:%d:%s:7000" % (fwd, harness.SERVER_ADDR)]

    table = []
    # Shared link options, for both programs.
    for prog, base, tail in (("roam-server", server_base, ["echo"]), ("roam-client", client_base, forward)):
        link, addr, route = base[0:2], base[2:4], base[4:6]
        table += [
            ("no arguments", prog, []),
            ("unknown option", prog, base + ["--frobnicate"] + tail),
            ("unknown short option", prog, base + ["-x"] + tail),
            ("--mtu abc", prog, base + ["--mtu", "abc"] + tail),
            ("--mtu 100 (below 576)", prog, base + ["--mtu", "100"] + tail),
            ("--mtu 65536 (above 65535)", prog, base + ["--mtu", "65536"] + tail),
            ("--mtu -1", prog, base + ["--mtu", "-1"] + tail),
            ("--mtu with no value", prog, base + tail + ["--mtu"]),
            ("--addr notanip", prog, link + ["--addr", "notanip"] + route + tail),
            ("--addr prefix /33", prog, link + ["--addr", addr[1] + "/33"] + route + tail),
            ("--addr IPv6 address", prog, link + ["--addr", "fd00::1"] + route + tail),
            ("--addr missing", prog, link + route + tail),
            ("--addr6 not IPv6", prog, base + ["--addr6", "198.18.0.1"] + tail),
            ("udp link without --route", prog, link + addr + tail),
            ("--route without '='", prog, link + addr + ["--route", "198.18.0.0/16"] + tail),
            ("--route without port", prog, link + addr + ["--route", "198.18.0.0/16=127.0.0.1"] + tail),
            ("--route bad prefix", prog, link + addr + ["--route", "198.18.0.0/40=127.0.0.1:9"] + tail),
            ("--link bogus:x", prog, ["--link", "bogus:x"] + addr + route + tail),
            ("--link missing", prog, addr + route + tail),
            ("--link udp: bad port", prog, ["--link", "udp:127.0.0.1:99999"] + addr + route + tail),
            ("--link udp: not an IP", prog, ["--link", "udp:localhost:9"] + addr + route + tail),
            ("--route with a tun link", prog, ["--link", "tun:roamnx0"] + addr + route + tail),
            ("--udp-allow not an address", prog, base + ["--udp-allow", "somewhere"] + tail),
            ("--udp-allow port 0", prog, base + ["--udp-allow", "127.0.0.1:0"] + tail),
            ("--udp-allow with a tun link", prog, ["--link", "tun:roamnx0"] + addr + ["--udp-allow", "any"] + tail),
            ("--link tun: unknown option", prog, ["--link", "tun:roamnx0,fast"] + addr + tail),
            ("--log-level loud", prog, base + ["--log-level", "loud"] + tail),
            ("--pcap in a missing directory", prog, base + ["--pcap", "/nonexistent-dir/x.pcap"] + tail),
            ("--dead-peer 2 (below 3)", prog, base + ["--dead-peer", "2"] + tail),
            ("--dead-peer 86401", prog, base + ["--dead-peer", "86401"] + tail),
            ("--dead-peer 1.5", prog, base + ["--dead-peer", "1.5"] + tail),
            ("--dead-peer with no value", prog, base + tail + ["--dead-peer"]),
            ("--connect-timeout 601", prog, base + ["--connect-timeout", "601"] + tail),
            ("--connect-timeout abc", prog, base + ["--connect-timeout", "abc"] + tail),
        ]
        if os.geteuid() != 0:
            table.append(("tun link on a device that does not exist", prog,
                          ["--link", "tun:roamnx%d" % os.getpid()] + addr + tail))
    # roam-server only.
    table += [
        ("server: no mode", "roam-server", server_base),
        ("server: unknown mode", "roam-server", server_base + ["bounce"]),
        ("server: two modes", "roam-server", server_base + ["echo", "discard"]),
        ("server: relay without --backend", "roam-server", server_base + ["relay"]),
        ("server: relay --backend not an address", "roam-server", server_base + ["relay", "--backend", "nowhere"]),
        ("server: relay --backend without port", "roam-server", server_base + ["relay", "--backend", "127.0.0.1"]),
        ("server: --backend with echo", "roam-server", server_base + ["echo", "--backend", "127.0.0.1:9"]),
        ("server: --listen 0", "roam-server", server_base + ["--listen", "0", "echo"]),
        ("server: --listen 70000", "roam-server", server_base + ["--listen", "70000", "echo"]),
        ("server: --syn-cookies maybe", "roam-server", server_base + ["--syn-cookies", "maybe", "echo"]),
        ("server: --syn-cookies without value", "roam-server", server_base + ["echo", "--syn-cookies"]),
        ("server: --flood-detector maybe", "roam-server", server_base + ["--flood-detector", "maybe", "echo"]),
        ("server: --syn-retx-check maybe", "roam-server", server_base + ["--syn-retx-check", "maybe", "echo"]),
        ("server: --syn-cookie-trigger 0", "roam-server", server_base + ["--syn-cookie-trigger", "0", "echo"]),
        ("server: --syn-cookie-trigger 101", "roam-server", server_base + ["--syn-cookie-trigger", "101", "echo"]),
        ("server: --half-open-per-prefix x", "roam-server", server_base + ["--half-open-per-prefix", "x", "echo"]),
        ("server: --listen abc", "roam-server", server_base + ["--listen", "abc", "echo"]),
    ]
    # roam-client only.
    client_l = lambda spec: client_base + ["-L", spec]  # noqa: E731
    table += [
        ("client: no -L", "roam-client", client_base),
        ("client: -L 1:2", "roam-client", client_l("1:2")),
        ("client: -L abc:198.18.12.2:7000", "roam-client", client_l("abc:%s:7000" % harness.SERVER_ADDR)),
        ("client: -L with no value", "roam-client", client_base + ["-L"]),
        ("client: -L empty", "roam-client", client_l("")),
        ("client: -L server not an IP", "roam-client", client_l("%d:server.example:7000" % fwd)),
        ("client: -L server port 0", "roam-client", client_l("%d:%s:0" % (fwd, harness.SERVER_ADDR))),
        ("client: -L server port 70000", "roam-client", client_l("%d:%s:70000" % (fwd, harness.SERVER_ADDR))),
        ("client: -L local port 70000", "roam-client", client_l("70000:%s:7000" % harness.SERVER_ADDR)),
        ("client: -L bad bind address", "roam-client", client_l("999.1.1.1:%d:%s:7000" % (fwd, harness.SERVER_ADDR))),
        ("client: -L too many fields", "roam-client", client_l("127.0.0.1:%d:%s:7000:9" % (fwd, harness.SERVER_ADDR))),
        ("client: --addr-from-device on a udp link", "roam-client",
         client_l("%d:%s:7000" % (fwd, harness.SERVER_ADDR)) + ["--addr-from-device"]),
        ("client: --addr-from-device on a missing tun device", "roam-client",
         ["--link", "tun:rsnodev0", "-L", "%d:%s:7000" % (fwd, harness.SERVER_ADDR), "--addr-from-device"]),
        ("client: --addr-file missing", "roam-client",
         client_l("%d:%s:7000" % (fwd, harness.SERVER_ADDR)) + ["--addr-file", "/nonexistent/roam-address"]),
        ("client: --addr-file with --addr-from-device", "roam-client",
         client_l("%d:%s:7000" % (fwd, harness.SERVER_ADDR)) + ["--addr-file", "/dev/null", "--addr-from-device"]),
    ]
    return table


def check_one_line_error(desc, prog, argv, failures):
    path = harness.ROAM_SERVER if prog == "roam-server" else harness.ROAM_CLIENT
    code, out, err = run_program([path] + argv)
    lines = err.splitlines()
    problems = []
    if code is None:
        problems.append("still running after %.0f s (accepted the command line?)" % RUN_TIMEOUT)
    elif code < 0:
        problems.append("died of signal %d" % -code)
    elif code != 2:
        problems.append("exit code %d, expected 2" % code)
    if len(lines) != 1:
        problems.append("%d stderr lines, expected exactly 1" % len(lines))
    if not lines or not lines[0].startswith(prog + ":"):
        problems.append("stderr does not start with %r" % (prog + ":"))
    for marker in harness.SANITIZER_MARKERS + ("Traceback", "Aborted", "what():", "core dumped"):
        if marker in err:
            problems.append("stderr contains %r" % marker)
    shown = " ".join([prog] + argv)
    if problems:
        failures.append("%s\n      $ %s\n      -> %s\n      stderr: %r" % (desc, shown, "; ".join(problems), err[-600:]))
        log("  FAIL  %-45s %s" % (desc, "; ".join(problems)))
    else:
        log("  ok    %-45s %s" % (desc, lines[0]))


def main():
    failures = []
    table = cases()
    log("%d bad invocations" % len(table))
    for desc, prog, argv in table:
        check_one_line_error(desc, prog, argv, failures)

    # Resources already taken: the udp link port / the -L port in use.
    busy_udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    busy_udp.bind(("127.0.0.1", 0))
    busy_tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy_tcp.bind(("127.0.0.1", 0))
    busy_tcp.listen(1)
    try:
        p_udp, p_tcp = busy_udp.getsockname()[1], busy_tcp.getsockname()[1]
        other = harness.free_udp_port()
        check_one_line_error("server: udp link port in use", "roam-server",
                             ["--link", "udp:127.0.0.1:%d" % p_udp, "--addr", harness.SERVER_ADDR,
                              "--route", "%s=127.0.0.1:%d" % (harness.CLIENT_NET, other), "echo"], failures)
        check_one_line_error("client: -L port in use", "roam-client",
                             ["--link", "udp:127.0.0.1:%d" % harness.free_udp_port(), "--addr", harness.CLIENT_ADDR,
                              "--route", "%s=127.0.0.1:%d" % (harness.SERVER_NET, other),
                              "-L", "127.0.0.1:%d:%s:7000" % (p_tcp, harness.SERVER_ADDR)], failures)
    finally:
        busy_udp.close()
        busy_tcp.close()

    if os.geteuid() == 0:
        log("  SKIP  tun link on a device that does not exist: running as root, which would create it")

    for prog, path in (("roam-server", harness.ROAM_SERVER), ("roam-client", harness.ROAM_CLIENT)):
        for flag in ("--help", "-h"):
            code, out, err = run_program([path, flag])
            if code != 0 or "Usage:" not in out:
                failures.append("%s %s: exit %s, 'Usage:' %s on stdout; stderr %r"
                                % (prog, flag, code, "present" if "Usage:" in out else "missing", err[-300:]))
                log("  FAIL  %s %s" % (prog, flag))
            else:
                log("  ok    %s %s exits 0 with Usage:" % (prog, flag))

    if failures:
        raise TestFailure("%d invocation(s) misbehaved:\n  - %s" % (len(failures), "\n  - ".join(failures)))


if __name__ == "__main__":
    harness.run(main)
