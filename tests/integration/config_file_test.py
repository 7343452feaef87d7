#!/usr/bin/env python3
"""roam-server and roam-client run from config files (--config FILE, TOML).

1. harness.TwoServers with every option of servers A, B and the client moved into a TOML
   file per process (only `--config FILE` on their command lines): an echo session round
   trips, moves A->B with roamctl ("ok moved 1 of 1"), round trips again on the same
   connection (now served by B), and every process stops cleanly.
2. Errors name the file, line and key: an unknown key, a value of the wrong type, a value
   the option parser refuses (its own reason), a duplicate key; each exits 2 with one line.
3. Every option roam-server --help and roam-client --help list is a key the file accepts
   (the file's keys cannot drift from the options).
4. The command line overrides the file: a bad --mtu in the file, replaced on the command
   line, starts.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

FLAGS = {"--status-open", "--pin-keys", "--require-owner-proof", "--no-follow", "--addr-from-device"}


def toml_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def argv_to_toml(argv):
    """argv (without the program) as TOML: repeated options become lists, the bare word
    is `mode`, -L is `forward`."""
    values = {}
    order = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            key = "forward" if arg == "-L" else arg[2:]
            if arg in FLAGS:
                value = True
                i += 1
            else:
                value = argv[i + 1]
                i += 2
        else:
            key, value = "mode", arg
            i += 1
        if key not in values:
            order.append(key)
            values[key] = []
        values[key].append(value)
    lines = ["# written by config_file_test.py"]
    for key in order:
        vals = values[key]
        if key in ("route", "forward", "udp-allow", "trust-pool"):
            lines.append("%s = [%s]" % (key, ", ".join(toml_string(v) for v in vals)))
        elif vals[0] is True:
            lines.append("%s = true" % key)
        else:
            check(len(vals) == 1, "option --%s given twice: %r" % (key, argv))
            lines.append("%s = %s" % (key, toml_string(vals[0])))
    return "\n".join(lines) + "\n"


def from_config(name, argv):
    path = os.path.join(harness.log_dir(), "%s.toml" % name)
    with open(path, "w") as f:
        f.write(argv_to_toml(argv[1:]))
    return [argv[0], "--config", path]


def round_trip(sock, payload):
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        if not chunk:
            raise TestFailure("echo ended after %d of %d bytes" % (len(got), len(payload)))
        got += chunk
    check(got == payload, "echo returned other bytes")


def move_from_files():
    with harness.TwoServers(mode="echo", argv_hook=from_config) as t:
        for name in ("A", "B", "client"):
            proc = t.client if name == "client" else t.servers[name]
            check(proc.argv[1] == "--config" and len(proc.argv) == 3, "%s ran with %r" % (name, proc.argv))
        sock = t.connect()
        round_trip(sock, b"before the move\n" * 100)
        t.migrate("A", "B", expect_moved=1)
        round_trip(sock, b"after the move\n" * 100)
        check(t.status("B")["sessions_imported"] == 1, "B imported no session")
        sock.close()
        t.stop_all()
    log("config files: A, B and the client ran from TOML files; a session moved A->B and echoed after")


def run(program, *args):
    return subprocess.run([program] + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=harness.IO_TIMEOUT)


def expect_error(program, text, expected, *extra):
    path = os.path.join(harness.log_dir(), "bad.toml")
    with open(path, "w") as f:
        f.write(text)
    result = run(program, "--config", path, *extra)
    want = "%s: %s:%s" % (os.path.basename(program).replace("_", "-"), path, expected)
    lines = result.stderr.strip().splitlines()
    check(result.returncode == 2 and len(lines) == 1 and lines[0].startswith(want),
          "%s with %r: exit %d, stderr %r; expected exit 2 and one line starting %r" % (
              program, text, result.returncode, result.stderr, want))
    return lines[0]


def errors():
    server = harness.ROAM_SERVER
    expect_error(server, "mode = \"echo\"\n\nlistn = 7000\n", "3: unknown key 'listn'")
    expect_error(server, "mode = \"echo\"\nmtu = 1.5\n", "2: key 'mtu': expected a string or an integer, got a float")
    expect_error(server, "mtu = 99999\n", "1: key 'mtu': --mtu out of range: 99999")
    expect_error(server, "listen = 7000\nlisten = 7001\n", "2: ")
    expect_error(harness.ROAM_CLIENT, "forward = [\"1:2\"]\n", "1: key 'forward': bad -L '1:2'")
    log("config files: unknown key, wrong type, bad value and duplicate key each named file:line")


def help_options(program):
    text = run(program, "--help").stdout
    return sorted(set(re.findall(r"^  (--[a-z0-9-]+)", text, re.M)) - {"--help", "--config"})


def every_option_is_a_key():
    for program in (harness.ROAM_SERVER, harness.ROAM_CLIENT):
        options = help_options(program)
        check(len(options) > 20, "%s --help lists only %r" % (program, options))
        for option in options:
            path = os.path.join(harness.log_dir(), "key.toml")
            with open(path, "w") as f:
                f.write("%s = \"x\"\n" % option[2:])
            result = run(program, "--config", path)
            check(result.returncode == 2 and "unknown key" not in result.stderr,
                  "%s: --help lists %s but a config file cannot set it: exit %d, %r" % (
                      program, option, result.returncode, result.stderr))
    log("config files: every option in --help is a config key")


def command_line_overrides():
    port = harness.free_udp_port()
    path = os.path.join(harness.log_dir(), "override.toml")
    with open(path, "w") as f:
        f.write(argv_to_toml(["--link", "udp:127.0.0.1:%d" % port, "--addr", harness.SERVER_ADDR,
                              "--route", "%s=127.0.0.1:%d" % (harness.CLIENT_NET, harness.free_udp_port()),
                              "--mtu", "99999", "echo"]))
    proc = harness.RoamProcess("server", [harness.ROAM_SERVER, "--config", path, "--mtu", "1400"])
    check(proc.wait_for_log("mtu 1400"), "the command line's --mtu did not replace the file's: %s\n%s" % (
        proc.exit_status(), proc.tail()))
    proc.stop()
    log("config files: the command line's --mtu replaced the file's bad one")


def main():
    errors()
    every_option_is_a_key()
    command_line_overrides()
    move_from_files()
    log("PASS")


if __name__ == "__main__":
    harness.run(main)
