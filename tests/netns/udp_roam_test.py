#!/usr/bin/env python3
"""A roam-client on a UDP link behind a NAT keeps downloading while its outer UDP endpoint
changes twice (issue 12: "roam-client watches its link's addresses and moves by itself",
"a NAT rebinds"; docs/PROTOCOL.md 3.8). The server's link roams (--udp-roam): the client
got a link key on its control channel and proves each new endpoint with a link rebind.

  c   roam-client --link udp:0.0.0.0:7500 (inner 198.18.50.2), forward 127.0.0.1:9000 ->
      198.18.60.1:7000; the kernel reader (paced, SHA-256)
  r   router with this test's own nftables NAT: UDP from rc0 to rs0 masqueraded
  s   roam-server files --link udp:198.18.2.1:7600 (inner 198.18.60.1), static route
      198.18.50.0/24=198.18.2.254:7500 (the NAT's mapping at start), --udp-roam
      198.18.50.0/24

  (a) the NAT rebinds: its rule becomes SNAT to ports 41000-41099 and its conntrack table
      is flushed, so the client's next datagram leaves from a new external port while the
      client's host notices nothing; its periodic rebind (--udp-rebind-interval 1) heals it.
  (b) the client's host changes address (198.18.1.1 -> 198.18.5.1 on c0, the default
      route with it): the client's address watcher sends a rebind at once.
  (c) from spoofed sources in 198.18.9.0/24 (an address r owns), a captured rebind
      replayed, a forged one, a truncated one and one for an unknown inner address: each
      is dropped and counted, and no route moves to the spoofer.

The download (12 MiB times ROAMSTACK_TEST_SCALE, at least 3 MiB) completes byte-exact
with a clean EOF; the server logged each move; both processes exit 0 on SIGTERM.
Exit 0 passed, 1 failed, 77 skipped (not root, or no `ip netns`).
"""
import hashlib
import os
import random
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import ROAM_CLIENT, ROAM_SERVER, TOPOLOGY, Failure, log  # noqa: E402
import netns_lab  # noqa: E402
from netns_lab import PacedReader, run_tool, wait_until  # noqa: E402

MIB = 1 << 20


def scaled(nbytes, minimum):
    try:
        value = float(os.environ.get("ROAMSTACK_TEST_SCALE", "1.0"))
    except ValueError:
        value = 1.0
    value = value if value > 0 else 1.0
    return max(minimum, int(nbytes * value)) // (64 * 1024) * (64 * 1024)


SIZE = scaled(12 * MIB, 3 * MIB)
RATE = max(SIZE // 4, MIB)  # about 4 s of transfer, whatever the scale
NAME = "download.bin"
SERVER_LINK = "198.18.2.1:7600"

NAT_START = """
table ip udproam
delete table ip udproam
table ip udproam {
    chain post {
        type nat hook postrouting priority srcnat; policy accept;
        iifname "rc0" oifname "rs0" meta l4proto udp masquerade
    }
}
"""

NAT_REBOUND = """
flush chain ip udproam post
add rule ip udproam post iifname "rc0" oifname "rs0" meta l4proto udp snat to 198.18.2.254:41000-41099
"""

# Flushes the namespace's conntrack table over ctnetlink (no conntrack tool needed):
# IPCTNL_MSG_CT_DELETE with no attributes deletes every entry of the family.
CONNTRACK_FLUSH = """
import socket, struct, sys
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
body = struct.pack("BBH", socket.AF_INET, 0, 0)
s.send(struct.pack("=IHHII", 16 + len(body), (1 << 8) | 2, 1 | 4, 1, 0) + body)
reply = s.recv(4096)
sys.exit(0 if struct.unpack("=i", reply[16:20])[0] == 0 else 1)
"""

# Prints the payload (hex) of the first UDP datagram to port 7600 on s0 that is a link
# rebind (first byte 0x1A), then exits; gives up after 20 s.
SNIFFER = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
s.bind(("s0", 0))
s.settimeout(20)
while True:
    p = s.recv(4096)
    ihl = (p[0] & 15) * 4
    if p[9] != 17 or int.from_bytes(p[ihl + 2:ihl + 4], "big") != 7600:
        continue
    payload = p[ihl + 8:]
    if payload[:1] == b"\\x1a":
        print(payload.hex(), flush=True)
        break
"""

# Sends each hex datagram given (argv[2:]) from 198.18.9.9 (argv[1] times each) to the
# server's link. At most 64 datagrams, done at once: a bounded flood.
SPOOFER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.18.9.9", 0))
for text in sys.argv[2:]:
    for _ in range(min(int(sys.argv[1]), 16)):
        s.sendto(bytes.fromhex(text), ("198.18.2.1", 7600))
"""


def write_file(directory):
    rng, digest = random.Random(21), hashlib.sha256()
    with open(os.path.join(directory, NAME), "wb") as f:
        left = SIZE
        while left > 0:
            block = rng.randbytes(min(left, 4 * MIB))
            digest.update(block)
            f.write(block)
            left -= len(block)
    return digest.hexdigest()


def in_ns(lab, role, argv, what, **kwargs):
    return run_tool([TOPOLOGY, "exec", lab.name, role] + argv, what, **kwargs)


def moves(lab):
    return re.findall(r"198\.18\.50\.2 is now at (\S+) \(link rebind\)", lab.log_text("server"))


def main(lab):
    directory = os.path.join(lab.workdir, "files")
    os.makedirs(directory)
    want = write_file(directory)
    # The client's second network (b) and the spoofer's address (c), ready beforehand.
    in_ns(lab, "r", ["ip", "addr", "add", "198.18.5.254/24", "dev", "rc0"], "r: second client network")
    in_ns(lab, "c", ["ip", "addr", "add", "198.18.5.1/24", "dev", "c0"], "c: second address")
    in_ns(lab, "r", ["ip", "addr", "add", "198.18.9.9/32", "dev", "lo"], "r: spoofer address")
    subprocess.run([TOPOLOGY, "exec", lab.name, "r", "nft", "-f", "-"], input=NAT_START, text=True, check=True,
                   capture_output=True)

    lab.start("server", "s", [ROAM_SERVER, "--link", "udp:" + SERVER_LINK, "--addr", "198.18.60.1", "--route",
                              "198.18.50.0/24=198.18.2.254:7500", "--udp-roam", "198.18.50.0/24", "files", "--root",
                              directory])
    lab.wait_log("server", "interface up")
    lab.start("client", "c", [ROAM_CLIENT, "--link", "udp:0.0.0.0:7500", "--addr", "198.18.50.2", "--route",
                              "198.18.60.0/24=" + SERVER_LINK, "--udp-rebind-interval", "1", "-L",
                              "127.0.0.1:9000:198.18.60.1:7000"])
    lab.wait_log("client", "interface up")

    reader = PacedReader(lab, NAME, RATE)
    try:
        lab.wait_log("client", "gave us a link key for 198.18.50.2", seconds=20)
        wait_until(lambda: len(moves(lab)) >= 1, 15, "the server binding the client's first endpoint", reader.failed)
        log("ok   - the client got its link key; the server bound 198.18.50.2 to %s" % moves(lab)[0])

        # (a) the NAT rebinds
        wait_until(lambda: reader.received() >= SIZE // 4, 60, "a quarter of the download", reader.failed)
        at = reader.received()
        subprocess.run([TOPOLOGY, "exec", lab.name, "r", "nft", "-f", "-"], input=NAT_REBOUND, text=True,
                       check=True, capture_output=True)
        in_ns(lab, "r", ["python3", "-c", CONNTRACK_FLUSH], "flush r's conntrack")
        wait_until(lambda: any(m.startswith("198.18.2.254:410") for m in moves(lab)), 20,
                   "the server following the NAT's new port", reader.failed)
        wait_until(lambda: reader.received() >= at + SIZE // 8, 60, "the download going on after the NAT rebind",
                   reader.failed)
        log("ok   - (a) NAT rebind at %.1f MiB: the server followed to %s, the download goes on" % (
            at / MIB, moves(lab)[-1]))

        # (c) spoofed rebinds: a captured one replayed, forged, truncated, unknown inner address
        captured = in_ns(lab, "s", ["python3", "-c", SNIFFER], "capture a rebind", timeout=30).strip()
        if not captured.startswith("1a") or len(captured) != 96:
            raise Failure("captured %r, want a 48-byte IPv4 rebind" % captured)
        forged = captured[:-2] + ("00" if captured[-2:] != "00" else "01")
        truncated = captured[:40]
        unknown = captured[:14] + "63" + captured[16:]  # inner 198.18.50.99: no key (and a bad MAC)
        before = len(moves(lab))
        in_ns(lab, "r", ["python3", "-c", SPOOFER, "4", captured, forged, truncated, unknown], "spoof rebinds")
        wait_until(lambda: "dropped a link rebind from 198.18.9.9" in lab.log_text("server"), 10,
                   "the server dropping the spoofed rebinds", reader.failed)
        if len(moves(lab)) != before or any(m.startswith("198.18.9.9") for m in moves(lab)):
            raise Failure("a spoofed rebind moved the route: %s" % moves(lab))
        log("ok   - (c) replayed, forged, truncated and unknown rebinds from 198.18.9.9 moved nothing")

        # (b) the client's host changes address
        wait_until(lambda: reader.received() >= at + SIZE // 4, 60, "more of the download", reader.failed)
        at = reader.received()
        count = len(moves(lab))
        in_ns(lab, "c", ["ip", "route", "replace", "default", "via", "198.18.5.254", "dev", "c0"], "c: new route")
        in_ns(lab, "c", ["ip", "addr", "del", "198.18.1.1/24", "dev", "c0"], "c: old address gone")
        wait_until(lambda: "this host's addresses changed" in lab.log_text("client"), 10,
                   "the client noticing the address change", reader.failed)
        wait_until(lambda: len(moves(lab)) > count, 20, "the server following the new client address",
                   reader.failed)
        log("ok   - (b) client readdressed at %.1f MiB: the server followed to %s" % (at / MIB, moves(lab)[-1]))

        done = wait_until(reader.done, 120, "the download finishing", reader.failed)
        words = done.split()
        if int(words[1]) != SIZE or words[2] != want:
            raise Failure("received %s bytes sha256 %s, want %d bytes sha256 %s" % (words[1], words[2], SIZE, want))
        log("ok   - %.1f MiB byte-exact (SHA-256) with a clean EOF" % (SIZE / MIB))
    finally:
        reader.kill()

    lab.stop_cleanly(["client", "server"])
    text = lab.log_text("server")
    m = re.search(r"link rebinds: keys issued (\d+), received (\d+), applied (\d+), unchanged (\d+), malformed (\d+), "
                  r"unknown (\d+), forged (\d+), replayed (\d+), rate-limited (\d+)", text)
    if not m:
        raise Failure("the server logged no rebind counters:\n" + text[-1500:])
    keys, received, applied, unchanged, malformed, unknown_n, forged_n, replayed, limited = map(int, m.groups())
    if keys < 1 or applied < 3 or malformed < 4 or unknown_n < 4 or forged_n < 4 or replayed < 4:
        raise Failure("server rebind counters: %s; want keys >= 1, applied >= 3, and >= 4 of each bad kind" %
                      m.group(0))
    log("ok   - server: %s" % m.group(0))


if __name__ == "__main__":
    netns_lab.run("ur", main)
