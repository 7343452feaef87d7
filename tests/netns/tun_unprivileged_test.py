#!/usr/bin/env python3
"""roam-server without privilege on TUN (the tunnel client's normal case): the lab's
persistent devices are made for user `nobody` (tools/netns/topology --tun-user), and
roam-server runs as nobody (setpriv) inside the server namespace.

- When /dev/net/tun is open to other users (Debian's default 0666), it must attach to the
  persistent rtun0 without privilege and serve a kernel TCP client in c (echo round trip).
- When this machine's /dev/net/tun is closed to others (some sandboxes make it 0600),
  attaching is impossible for anyone but root: the test then checks the error instead
  (one line on stderr naming /dev/net/tun, exit 2) and says the attach was not exercised.
- Either way, a device that does not exist gives one clear line and exit 2, and an
  unprivileged user cannot create devices.
Exit 0 passed, 1 failed, 77 skipped (not root, no setpriv or no `ip netns`)."""
import os
import shutil
import socket
import stat
import subprocess
import sys
import time

ROOT = os.environ.get("ROAMSTACK_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
TOPOLOGY = os.path.join(ROOT, "tools", "netns", "topology")
ROAM_SERVER = os.environ.get("ROAM_SERVER", os.path.join(ROOT, "build", "apps", "roam-server"))
LAB = "tu%04d" % (os.getpid() % 10000)
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def in_ns(role, argv, **kw):
    return [TOPOLOGY, "exec", LAB, role] + argv


def one_line_error(result, needle):
    lines = result.stderr.strip().splitlines()
    return result.returncode == 2 and len(lines) == 1 and lines[0].startswith("roam-server:") and needle in lines[0]


def main():
    failures = []
    mode = os.stat("/dev/net/tun").st_mode
    open_to_others = bool(mode & stat.S_IROTH) and bool(mode & stat.S_IWOTH)
    server_args = ["--addr", "198.18.12.2", "echo"]
    if open_to_others:
        proc = subprocess.Popen(in_ns("s", AS_NOBODY + [ROAM_SERVER, "--link", "tun:rtun0"] + server_args),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            reply = b""
            for _ in range(50):
                out = subprocess.run(in_ns("c", [sys.executable, "-c", (
                    "import socket; s=socket.create_connection(('198.18.12.2',7000),timeout=2);"
                    "s.sendall(b'hello'); print(s.recv(16).decode())")]), capture_output=True, text=True)
                if out.returncode == 0:
                    reply = out.stdout.strip().encode()
                    break
                time.sleep(0.1)
            if reply == b"hello":
                print("ok   - roam-server as nobody attached to the persistent rtun0 and served an echo")
            else:
                failures.append("roam-server as nobody did not serve on rtun0")
        finally:
            proc.terminate()
            proc.wait(10)
    else:
        result = subprocess.run(in_ns("s", AS_NOBODY + [ROAM_SERVER, "--link", "tun:rtun0"] + server_args),
                                capture_output=True, text=True, timeout=30)
        if one_line_error(result, "/dev/net/tun"):
            print("ok   - /dev/net/tun is mode %o here (closed to other users): attach as nobody NOT exercised; "
                  "the refusal is one clear line: %s" % (stat.S_IMODE(mode), result.stderr.strip()))
        else:
            failures.append("as nobody with /dev/net/tun closed: exit %d, stderr %r" % (result.returncode, result.stderr))
    result = subprocess.run(in_ns("s", AS_NOBODY + [ROAM_SERVER, "--link", "tun:nosuch0"] + server_args),
                            capture_output=True, text=True, timeout=30)
    if one_line_error(result, "tun"):
        print("ok   - a missing device as nobody: %s" % result.stderr.strip())
    else:
        failures.append("missing device as nobody: exit %d, stderr %r" % (result.returncode, result.stderr))
    links = subprocess.run(in_ns("s", ["ip", "-o", "link"]), capture_output=True, text=True).stdout
    if "nosuch0" in links:
        failures.append("an unprivileged roam-server created a TUN device")
    else:
        print("ok   - no device was created without privilege")
    for f in failures:
        print("FAIL - " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    if os.geteuid() != 0 or shutil.which("setpriv") is None or shutil.which("ip") is None:
        print("SKIP: needs root, setpriv and iproute2")
        sys.exit(77)
    code = 1
    try:
        up = subprocess.run([TOPOLOGY, "up", LAB, "--tun-user", "nobody"], capture_output=True, text=True)
        if up.returncode != 0:
            print("FAIL - topology up: " + up.stderr)
        else:
            code = main()
    finally:
        subprocess.run([TOPOLOGY, "down", LAB], capture_output=True)
    sys.exit(code)
