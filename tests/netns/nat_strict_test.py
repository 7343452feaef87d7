#!/usr/bin/env python3
"""The lab's strict NAT (tools/netns/nat) blocks a connection whose server moved, as seed
000 describes and as a real firewall does, when the NAT handover is off (`--handover off`
on all three processes): the half of the problem the synthetic handshake fixes
(tests/netns/nat_handover_test.py shows the other half).

  c   roam-client on rtun0 (198.18.11.2), forward 127.0.0.1:9000 -> 198.18.12.2:7000 (echo)
  r   tools/netns/nat on: masquerade toward s and s2, forward policy drop, new flows only
      from a client-side TCP SYN, conntrack with be_liberal=0 and loose=0
  s   roam-server echo on rtun0 (198.18.12.2); s2 the same on 198.18.13.2

Checks: an echo connection opened through the NAT works (and the control channel to s
with it: the move is announced by an ACM through the NAT); `roamctl migrate s -> s2`
answers "ok moved 1 of 1"; the client follows, but its redirected packets are not
admitted: the NAT's invalid/blocked counters grow and no echo comes back within 5 s, while
a NEW connection through the same NAT to s2 still works (the NAT is strict, not broken).
Exit 0 passed, 1 failed, 77 skipped (not root, or no `ip netns`).
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import ECHO_CLIENT, NAT, ROAM_CLIENT, ROAM_SERVER, ROAMCTL, Failure, log  # noqa: E402
import netns_lab  # noqa: E402

CONTROL = {"s": "198.18.2.1:7100", "s2": "198.18.3.1:7100"}



def counters(lab):
    out = subprocess.run([NAT, "counters", lab.name], capture_output=True, text=True)
    words = out.stdout.split()
    return dict(zip(words[0::2], map(int, words[1::2])))


def main(lab):
    nat = subprocess.run([NAT, "on", lab.name], capture_output=True, text=True)
    if nat.returncode != 0:
        raise Failure("nat on: " + nat.stderr)
    for role, addr in (("s", "198.18.12.2"), ("s2", "198.18.13.2")):
        lab.start("server_" + role, role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", addr, "--control",
                                           CONTROL[role], "--handover", "off"] + lab.pool().server_args(role) + ["echo"])
        lab.wait_log("server_" + role, "interface up")
    lab.start("client", "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", "198.18.11.2", "--handover", "off",
                              "-L", "127.0.0.1:9000:198.18.12.2:7000", "-L", "127.0.0.1:9001:198.18.13.2:7000"])
    lab.wait_log("client", "interface up")

    echo = subprocess.Popen([netns_lab.TOPOLOGY, "exec", lab.name, "c", sys.executable, "-c", ECHO_CLIENT, "9000"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def round_trip():
        echo.stdin.write("ROUND 4096\n")
        echo.stdin.flush()
        return echo.stdout.readline().strip()

    try:
        if round_trip() != "echo ok":
            raise Failure("no echo through the NAT before the move")
        lab.wait_log("client", "established from local port")
        log("ok   - echo through the strict NAT; control channel to s established through it")
        deadline = time.monotonic() + 15
        while '"registrations":1' not in lab.run_in("r", [ROAMCTL, "status", "--server", CONTROL["s"]]).stdout:
            if time.monotonic() > deadline:
                raise Failure("s never got the client's registration")
            time.sleep(0.1)
        before = counters(lab)
        out = lab.run_in("r", [ROAMCTL, "migrate", "--from", CONTROL["s"], "--to", CONTROL["s2"]], timeout=60)
        if out.returncode != 0 or not out.stdout.startswith("ok moved 1 of 1"):
            raise Failure("move s -> s2: %s %s" % (out.stdout.strip(), out.stderr.strip()))
        lab.wait_log("client", "connection(s) follow (ACM")
        log("ok   - moved s -> s2 and the client followed the ACM: " + out.stdout.strip())
        result = round_trip()
        after = counters(lab)
        dropped = (after["invalid"] - before["invalid"]) + (after["blocked"] - before["blocked"])
        if result == "echo ok":
            raise Failure("the redirected connection got through the strict NAT without a handshake")
        if dropped == 0:
            raise Failure("the NAT counted no drop: %s -> %s" % (before, after))
        log("ok   - redirected connection blocked by the NAT (%s; invalid %d, blocked %d packets)" % (
            result, after["invalid"] - before["invalid"], after["blocked"] - before["blocked"]))
    finally:
        echo.stdin.close()
        echo.kill()
        echo.wait()

    fresh = subprocess.Popen([netns_lab.TOPOLOGY, "exec", lab.name, "c", sys.executable, "-c", ECHO_CLIENT, "9001"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    fresh.stdin.write("ROUND 4096\n")
    fresh.stdin.flush()
    line = fresh.stdout.readline().strip()
    fresh.stdin.close()
    fresh.wait(10)
    if line != "echo ok":
        raise Failure("a new connection to s2 through the NAT failed: %r" % line)
    log("ok   - a new connection through the same NAT to s2 works (a SYN opens the way)")
    lab.stop_cleanly(["client", "server_s", "server_s2"])
    log("ok   - every roam process exited 0 on SIGTERM")


if __name__ == "__main__":
    netns_lab.run("ns", main)
