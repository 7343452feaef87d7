#!/usr/bin/env python3
"""The per-segment MAC with TUN offloads on (IFF_VNET_HDR, checksum offload and TSO), on
real TUN devices in the lab's namespaces, against an on-path attacker in the router.

  c   roam-client on rtun0 (198.18.11.2), forward 127.0.0.1:9000 -> 198.18.12.2:7000 (echo)
  s   roam-server echo on rtun0 (198.18.12.2); s2 the same on 198.18.13.2 (phase 3)
  r   routes between them; the attacker runs here (scapy under /usr/bin/python3): it
      watches the carrier connection and injects in-window segments spoofed from each end

Each phase: a kernel client in c echoes 24 MiB through the forward (a bulk transfer both
ways, byte-exact), then a small round; with the stream idle the attacker knows exactly the
next sequence number each end expects and injects 8 segments of 64 bytes toward each end,
half with no MAC option, half with a made-up one; then one more echo round shows whether
the ends took the forged bytes.
The client runs with its defaults in both phases: it offers the MAC to every server.
  phase 1 (server without --segment-mac): nothing is signed; the forged bytes are taken
          (the echo round comes back wrong): the injection really is in window, and TCP
          alone does not stop it.
  phase 2 (roam-server --segment-mac; the client's default does the rest): bulk
          byte-exact with offloads on; the roam processes
          cut their multi-MSS segments and sign every piece (exit log "cut here for the
          segment MAC" > 0), the forged segments are dropped and counted at both ends
          (dropped missing >= 4 and dropped bad exactly 4 each: no genuine segment failed,
          so nothing merged signed segments on the way), the echo round comes back exact.
  phase 3 (the same, plus s2 on 198.18.13.2, both in the lab's pool): after the bulk the
          connection moves s -> s2 (roamctl in r); the bulk runs again byte-exact through
          s2, and the attack on the new path is dropped and counted at the client and s2
          (which took the connection's MAC state from its snapshot).
Exit 0 passed, 1 failed, 77 skipped (not root, or no `ip netns`, or no scapy).
"""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import ROAM_CLIENT, ROAM_SERVER, ROAMCTL, Failure, log  # noqa: E402
import netns_lab  # noqa: E402

CLIENT, SERVER, SERVER2, PORT = "198.18.11.2", "198.18.12.2", "198.18.13.2", 7000
BULK = 24 << 20
FORGED_EACH_WAY = 8

# A kernel client inside c: "BULK n" echoes n bytes (a writer thread, so neither side
# blocks), "ROUND n" a small round; each prints one line. Any extra byte is "wrong".
ECHO = r"""
import os, socket, sys, threading
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=30)
for line in sys.stdin:
    n = int(line.split()[1])
    data = os.urandom(n)
    writer = threading.Thread(target=s.sendall, args=(data,))
    writer.start()
    got = bytearray()
    try:
        while len(got) < n:
            chunk = s.recv(min(1 << 20, n - len(got)))
            if not chunk:
                break
            got += chunk
        writer.join()
        s.settimeout(1.0)  # anything more than was sent is a forged byte taken
        try:
            extra = s.recv(4096)
        except socket.timeout:
            extra = b""
        s.settimeout(30)
        print("echo ok" if got == data and not extra else "echo wrong %d+%d" % (len(got), len(extra)), flush=True)
    except socket.timeout:
        print("echo timeout", flush=True)
"""

# The attacker inside r: sniffs the carrier flows between CLIENT and the servers' PORT, and
# on "INJECT SERVER" (the stream idle) sends segments at exactly the next sequence number
# each end of the flow with SERVER expects, acknowledging what it has sent. Only spoofs the
# lab's addresses (198.18.0.0/15).
ATTACKER = r"""
import os, sys, threading, time
from scapy.all import IP, TCP, Raw, AsyncSniffer, send, conf
conf.verb = 0
CLIENT, PORT, EACH = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ends = {}  # (src, sport, dst, dport) -> next sequence number after what src sent
lock = threading.Lock()
def after(a, b):
    return ((a - b) & 0xFFFFFFFF) < 0x80000000
def track(p):
    if IP not in p or TCP not in p:
        return
    ip, tcp = p[IP], p[TCP]
    span = len(bytes(tcp.payload)) + (1 if tcp.flags & 0x03 else 0)
    key = (ip.src, tcp.sport, ip.dst, tcp.dport)
    end = (tcp.seq + span) & 0xFFFFFFFF
    with lock:
        if key not in ends or after(end, ends[key]):
            ends[key] = end
sniffer = AsyncSniffer(iface=["rc0"], store=False, prn=track, filter="tcp and host %s and port %d" % (CLIENT, PORT))
sniffer.start()
print("sniffing", flush=True)
for line in sys.stdin:
    if not line.startswith("INJECT"):
        continue
    SERVER = line.split()[1]
    time.sleep(1.0)  # the idle stream's last segments reach the sniffer
    with lock:
        flows = [k for k in ends if k[0] == CLIENT and k[2] == SERVER and k[3] == PORT]
        if not flows:
            print("no flow seen", flush=True)
            continue
        c2s = max(flows, key=lambda k: k[1])  # the forward's connection
        cport = c2s[1]
        s2c = (SERVER, PORT, CLIENT, cport)
        to_server, to_client = ends[c2s], ends.get(s2c)
    if to_client is None:
        print("no reverse flow seen", flush=True)
        continue
    sent = 0
    for i in range(EACH):
        bad_mac = [(253, b"\x52\x53" + os.urandom(12))] if i % 2 else []
        send(IP(src=SERVER, dst=CLIENT) / TCP(sport=PORT, dport=cport, seq=to_client, ack=to_server, flags="PA",
             window=65535, options=bad_mac) / Raw(b"X" * 64))
        send(IP(src=CLIENT, dst=SERVER) / TCP(sport=cport, dport=PORT, seq=to_server, ack=to_client, flags="PA",
             window=65535, options=bad_mac) / Raw(b"Y" * 64))
        sent += 2
    print("injected %d port %d seq to client %d to server %d" % (sent, cport, to_client, to_server), flush=True)
"""


class Line:
    """A child in a namespace fed by stdin lines, answering one line each."""

    def __init__(self, lab, role, argv):
        self.proc = subprocess.Popen([netns_lab.TOPOLOGY, "exec", lab.name, role] + argv, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def ask(self, line):
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer:
            raise Failure("no answer to %r (exit %s)" % (line, self.proc.poll()))
        return answer

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


# Both ends may queue the whole 4 MiB: the server's echo builds multi-MSS (TSO) segments
# only while a backlog waits behind the client's window, and a client whose send buffer
# is sized to this fast path (--send-buffer auto) never lets one build up.
FIXED_SEND_BUFFER = ["--send-buffer", "fixed"]


def phase(lab, name, extra, move=False):
    """`extra`: the servers' options. The client runs with its defaults (it offers the MAC)
    but for FIXED_SEND_BUFFER, as the servers do.
    `move`: a second server s2 (198.18.13.2) in the lab's pool; after the first bulk the
    connection moves s -> s2, then the bulk and the attack run again on the new path.
    Returns the last echo round's answer and the logs by label."""
    servers = [("s", SERVER, "198.18.2.1:7100")] + ([("s2", SERVER2, "198.18.3.1:7100")] if move else [])
    for role, addr, control in servers:
        pool = ["--control", control] + lab.pool().server_args(role) if move else []
        lab.start("%s_%s" % (role, name), role, [ROAM_SERVER, "--link", "tun:rtun0", "--addr", addr] + pool + extra
                  + FIXED_SEND_BUFFER + ["echo"])
        lab.wait_log("%s_%s" % (role, name), "interface up")
    client = "client_" + name
    lab.start(client, "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr", CLIENT] + FIXED_SEND_BUFFER
              + ["-L", "127.0.0.1:9000:%s:%d" % (SERVER, PORT)])
    lab.wait_log(client, "interface up")
    labels = [client] + ["%s_%s" % (role, name) for role, _, _ in servers]
    for label in labels:
        if "offloads checksum+tso" not in lab.log_text(label):
            raise Failure("%s: TUN offloads are not on:\n%s" % (label, lab.log_text(label)[-1500:]))
    attacker = Line(lab, "r", ["/usr/bin/python3", "-c", ATTACKER, CLIENT, str(PORT), str(FORGED_EACH_WAY)])
    echo = Line(lab, "c", [sys.executable, "-c", ECHO, "9000"])

    def bulk(where):
        answer = echo.ask("BULK %d" % BULK)
        if answer != "echo ok":
            raise Failure("%s: bulk echo of %d MiB %s: %s" % (name, BULK >> 20, where, answer))
        log("ok   - %s: %d MiB echoed byte-exact with TUN offloads on %s" % (name, BULK >> 20, where))
        if echo.ask("ROUND 1000") != "echo ok":
            raise Failure("%s: small round failed %s" % (name, where))

    try:
        if attacker.ask(None) != "sniffing":
            raise Failure("attacker did not start")
        # The first connection opens the control channel, whose registration turns signing
        # on (with --segment-mac): let that happen before the bulk.
        if echo.ask("ROUND 1000") != "echo ok":
            raise Failure("%s: first round failed" % name)
        lab.wait_log(client, "established from local port")
        time.sleep(1.0)
        bulk("to s")
        target = SERVER
        if move:
            out = lab.run_in("r", [ROAMCTL, "migrate", "--from", servers[0][2], "--to", servers[1][2]], timeout=60)
            if out.returncode != 0 or not out.stdout.startswith("ok moved 1 of 1"):
                raise Failure("move s -> s2: %s %s" % (out.stdout.strip(), out.stderr.strip()))
            lab.wait_log(client, "moved to")
            log("ok   - %s: %s" % (name, out.stdout.strip()))
            bulk("after the move to s2")
            target = SERVER2
        injected = attacker.ask("INJECT " + target)
        if not injected.startswith("injected"):
            raise Failure("%s: attacker: %s" % (name, injected))
        log("     %s: attacker %s" % (name, injected))
        after = echo.ask("ROUND 1000")
    finally:
        echo.close()
        attacker.close()
    lab.stop_cleanly(labels)
    return after, {label: lab.log_text(label) for label in labels}


def check_dropped(name, client_log, server_log):
    """The forged segments dropped and counted at both ends; both ends cut and signed."""
    connections, signed, verified, missing, bad = number(
        r"segment MAC: connections (\d+), signed (\d+), verified (\d+), dropped missing (\d+) bad (\d+)", client_log,
        "client segment MAC counters")
    s_missing = number(r"segment_mac_dropped_missing (\d+)", server_log, "server dropped_missing")
    s_bad = number(r"segment_mac_dropped_bad (\d+)", server_log, "server dropped_bad")
    half = FORGED_EACH_WAY // 2
    # Exactly the forged ones fail their MAC: had GRO merged genuine signed segments on the
    # way (one tag over two pieces), more would. Missing: also the other end's segments
    # sent in the moment between the client's and the server's switch to signing.
    if missing < half or s_missing < half or bad != half or s_bad != half:
        raise Failure("%s: forgeries not counted as expected: client missing %d bad %d, server missing %d bad %d "
                      "(bad: want exactly %d each)" % (name, missing, bad, s_missing, s_bad, half))
    for label, text in (("client", client_log), ("server", server_log)):
        cut, pieces = number(r"cut here for the segment MAC (\d+) into (\d+)", text, label + " cut counters")
        if cut == 0 or pieces <= cut:
            raise Failure("%s: %s cut no multi-MSS segment for the MAC (cut %d into %d): was TSO in use?"
                          % (name, label, cut, pieces))
        log("ok   - %s: %s cut %d multi-MSS segments into %d signed pieces" % (name, label, cut, pieces))
    log("ok   - %s: the echo round exact; client signed %d verified %d, dropped missing %d bad %d; "
        "server dropped missing %d bad %d" % (name, signed, verified, missing, bad, s_missing, s_bad))


def number(pattern, text, what):
    found = re.findall(pattern, text)
    if not found:
        raise Failure("no %s in the log:\n%s" % (what, text[-1500:]))
    return [int(x) for x in found[-1]] if isinstance(found[-1], tuple) else int(found[-1])


def main(lab):
    if subprocess.run(["/usr/bin/python3", "-c", "import scapy.all"], capture_output=True).returncode != 0:
        print("SKIP: no scapy under /usr/bin/python3")
        sys.exit(77)

    after, _ = phase(lab, "plain", [])
    if after == "echo ok":
        raise Failure("server without --segment-mac: the forged segments were not taken: the injection missed "
                      "the window")
    log("ok   - server without --segment-mac: the in-window forgeries were taken (%s): TCP alone does not stop "
        "them" % after)

    after, logs = phase(lab, "mac", ["--segment-mac"])
    if after != "echo ok":
        raise Failure("server with --segment-mac (client defaults): the echo round came back %s" % after)
    check_dropped("mac", logs["client_mac"], logs["s_mac"])

    after, logs = phase(lab, "move", ["--segment-mac"], move=True)
    if after != "echo ok":
        raise Failure("moved to s2 with --segment-mac: the echo round came back %s" % after)
    if number(r"segment_mac_protected (\d+)", logs["s2_move"], "s2's protected connections") < 1:
        raise Failure("s2 protected no connection")
    check_dropped("move", logs["client_move"], logs["s2_move"])


if __name__ == "__main__":
    netns_lab.run("sm", main)
