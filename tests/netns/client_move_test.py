#!/usr/bin/env python3
"""A client that changes its own address while downloading (seed 003, "a client moves";
issue 12). roam-client runs with --addr-from-device: its lwIP address is the peer end of
its TUN device's point-to-point address, and when the test readdresses the device the
client rebinds its connection, tells the server with an authenticated ACM on a control
channel opened from the new address, and (behind a NAT) opens the new path with the
synthetic handshake. A kernel client in c downloads a seeded file through the forward,
reading at a paced rate so the transfer is in progress when the address changes.

  c   roam-client on rtun0 (198.18.11.1 peer 198.18.11.2, later 198.18.21.1 peer
      198.18.21.2), forward 127.0.0.1:9000 -> 198.18.12.2:7000; the kernel reader
  r   router; roamctl runs here
  s   roam-server files --root DIR on rtun0 (198.18.12.2), control 198.18.2.1:7100

Every variant gets a fresh lab (tools/netns/topology up again: empty conntrack, no rules).

  direct  no NAT: r routes 198.18.21.0/24 to c. The new address is where the client's new
          channel comes from, so the server answers `rebound` and points the connection
          there at once (status: peer_moves_applied >= 1, peer_moves_rebound >= 1; no
          handover SYN accepted).
  nat     a strict NAT in r (tools/netns/nat on: masquerade, new flows only from a SYN,
          conntrack be_liberal=0, loose=0) in front of the old network 198.18.11.0/24;
          the new network 198.18.21.0/24 sits behind a second strict NAT in c (this test's
          own nftables table: masquerade to 198.18.1.1, SYN-only admission) and then r's:
          r has no route to 198.18.21.0/24 at all. The server answers `applied`, the
          client's synthetic SYN crosses both NATs, and the server's responder rebinds the
          connection to where it came from (status: peer_moves_applied >= 1,
          handover_syns_accepted >= 1, none forged or replayed); c's NAT admitted the new
          flows and tracks them.
  mac     as nat, with the per-segment MAC on (roam-server --segment-mac; the client
          offers it by default): the connection's MAC key follows it to the new 4-tuple
          at both ends: the server verifies signed segments after the readdress and drops
          none for a bad MAC.

  v6      as direct, in IPv6 (2001:db8:11::2 -> 2001:db8:21::2, server 2001:db8:12::2;
          the device's IPv6 point-to-point address, the client's IPv4 one unchanged).

Each variant: the download (24 MiB, read at 3 MiB/s, readdressed at 4 MiB) is SHA-256
exact with a clean EOF; the client logs the change and the server's answer; the server
refused no move; both processes exit 0 on SIGTERM.
CLIENT_MOVE_VARIANTS=nat (comma list) runs some variants only.
Exit 0 passed, 1 failed, 77 skipped (not root, or no `ip netns`).
"""
import hashlib
import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from netns_lab import NAT, ROAM_CLIENT, ROAM_SERVER, ROAMCTL, TOPOLOGY, Failure, log  # noqa: E402
import netns_lab  # noqa: E402
from netns_lab import PacedReader, run_tool, wait_until  # noqa: E402

MIB = 1 << 20
SIZE = 24 * MIB
RATE = 3 * MIB
MOVE_AT = 4 * MIB
NAME = "download.bin"
CONTROL = "198.18.2.1:7100"
CARRIER = "198.18.12.2:7000"
OLD = ("198.18.11.1", "198.18.11.2")  # the kernel's end of rtun0, the client's lwIP address
NEW = ("198.18.21.1", "198.18.21.2")
# The v6 variant: the same moves in 2001:db8::/32 (the client keeps its IPv4 address).
CARRIER6 = "[2001:db8:12::2]:7000"
OLD6 = ("2001:db8:11::1", "2001:db8:11::2")
NEW6 = ("2001:db8:21::1", "2001:db8:21::2")
# IPv6 in the lab (tools/netns/topology is IPv4 only): (namespace, command) in order.
LAB6 = [
    ("c", "sysctl -q -w net.ipv6.conf.all.forwarding=1"),
    ("r", "sysctl -q -w net.ipv6.conf.all.forwarding=1"),
    ("s", "sysctl -q -w net.ipv6.conf.all.forwarding=1"),
    ("c", "ip addr add 2001:db8:1::1/64 dev c0 nodad"),
    ("r", "ip addr add 2001:db8:1::254/64 dev rc0 nodad"),
    ("r", "ip addr add 2001:db8:2::254/64 dev rs0 nodad"),
    ("s", "ip addr add 2001:db8:2::1/64 dev s0 nodad"),
    ("s", "ip addr add 2001:db8:12::1/64 dev rtun0 nodad"),
    ("c", "ip -6 route add default via 2001:db8:1::254 dev c0"),
    ("s", "ip -6 route add default via 2001:db8:2::254 dev s0"),
    ("r", "ip -6 route add 2001:db8:11::/64 via 2001:db8:1::1 dev rc0"),
    ("r", "ip -6 route add 2001:db8:21::/64 via 2001:db8:1::1 dev rc0"),
    ("r", "ip -6 route add 2001:db8:12::/64 via 2001:db8:2::1 dev rs0"),
    ("c", "ip addr add 2001:db8:11::1 peer 2001:db8:11::2 dev rtun0 nodad"),
]

# The kernel reader in c: asks for NAME, reads at RATE bytes/s at most; prints "recv N"
# every 256 KiB and "done N SHA" at EOF (or "error ..."). The 60 s read timeout is a hang
# detector only.
# The second NAT, in c, in front of the new network only: the old network's packets are
# forwarded untouched (r's NAT handles them). Strict as tools/netns/nat: a new flow must
# start with a SYN from rtun0; anything else not tracked is dropped and counted.
SECOND_NAT = """
table inet roammove
delete table inet roammove
table inet roammove {
    counter invalid { }
    counter blocked { }
    counter admitted { }
    chain forward {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        ct state invalid counter name invalid drop
        iifname "rtun0" oifname "c0" ip saddr 198.18.11.0/24 accept
        iifname "c0" oifname "rtun0" ip daddr 198.18.11.0/24 accept
        iifname "rtun0" oifname "c0" ip saddr 198.18.21.0/24 meta l4proto tcp tcp flags & (syn | ack | fin | rst) == syn ct state new counter name admitted accept
        counter name blocked drop
    }
    chain postrouting {
        type nat hook postrouting priority srcnat;
        iifname "rtun0" oifname "c0" ip saddr 198.18.21.0/24 masquerade
    }
}
"""


def write_file(directory):
    """The seeded file the server sends; returns its SHA-256."""
    rng, digest = random.Random(12), hashlib.sha256()
    with open(os.path.join(directory, NAME), "wb") as f:
        for _ in range(SIZE // (4 * MIB)):
            block = rng.randbytes(4 * MIB)
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def status(lab):
    out = lab.run_in("r", [ROAMCTL, "status", "--server", CONTROL], timeout=30)
    if out.returncode != 0:
        raise Failure("roamctl status: %s %s" % (out.stdout.strip(), out.stderr.strip()))
    return json.loads(out.stdout)


def readdress(lab, old, new):
    """What a roaming host's network manager does: the new address first, then the old one goes."""
    run_tool([TOPOLOGY, "exec", lab.name, "c", "ip", "addr", "add", new[0], "peer", new[1], "dev", "rtun0"],
             "add the new address")
    run_tool([TOPOLOGY, "exec", lab.name, "c", "ip", "addr", "del", old[0], "peer", old[1], "dev", "rtun0"],
             "remove the old address")


def nat_counters(lab):
    flat = lab.run_in("c", ["nft", "list", "counters"]).stdout
    out, counter = {}, None
    for line in flat.splitlines():
        words = line.split()
        if words[:1] == ["counter"]:
            counter = words[1]
        elif words[:1] == ["packets"] and counter:
            out[counter] = int(words[1])
    return out


def run_variant(lab, tag, directory, want_digest):
    labels = []
    client = "%s-client" % tag
    server = "%s-server" % tag
    # The client's device gets a point-to-point address: its peer is the client's own.
    run_tool([TOPOLOGY, "exec", lab.name, "c", "ip", "addr", "flush", "dev", "rtun0"], "flush rtun0")
    run_tool([TOPOLOGY, "exec", lab.name, "c", "ip", "addr", "add", OLD[0], "peer", OLD[1], "dev", "rtun0"],
             "address rtun0")
    old, new, carrier = (OLD6, NEW6, CARRIER6) if tag == "v6" else (OLD, NEW, CARRIER)
    if tag in ("direct", "v6"):
        run_tool([TOPOLOGY, "exec", lab.name, "r", "ip", "route", "add", "198.18.21.0/24", "via", "198.18.1.1",
                  "dev", "rc0"], "route the new network")
        if tag == "v6":
            for role, command in LAB6:
                run_tool([TOPOLOGY, "exec", lab.name, role] + command.split(), command)
    else:
        run_tool([NAT, "on", lab.name], "nat on (r)")
        subprocess.run([TOPOLOGY, "exec", lab.name, "c", "nft", "-f", "-"], input=SECOND_NAT, text=True,
                       check=True, capture_output=True)
        for key in ("net.netfilter.nf_conntrack_tcp_be_liberal=0", "net.netfilter.nf_conntrack_tcp_loose=0"):
            run_tool([TOPOLOGY, "exec", lab.name, "c", "sysctl", "-q", "-w", key], "sysctl " + key)
    lab.start(server, "s", [ROAM_SERVER, "--link", "tun:rtun0", "--addr", CARRIER.split(":")[0], "--control",
                            CONTROL] + (["--addr6", "2001:db8:12::2"] if tag == "v6" else []) + lab.pool().server_args("s") + (["--segment-mac"] if tag == "mac" else []) +
              ["files", "--root", directory])
    labels.append(server)
    lab.wait_log(server, "interface up")
    lab.start(client, "c", [ROAM_CLIENT, "--link", "tun:rtun0", "--addr-from-device", "-L",
                            "127.0.0.1:9000:" + carrier])
    labels.insert(0, client)
    lab.wait_log(client, "interface up")
    if "tun:rtun0" not in lab.log_text(client) or " %s " % old[1] not in lab.log_text(client).replace("/32", ""):
        raise Failure("the client did not take %s from its device:\n%s" % (old[1], lab.log_text(client)[-1500:]))
    log("ok   - %s: roam-client took %s from rtun0 (%s peer %s)" % (tag, old[1], old[0], old[1]))

    reader = PacedReader(lab, NAME, RATE)
    try:
        wait_until(lambda: reader.received() >= MOVE_AT, 60, "the download reaching %d MiB" % (MOVE_AT // MIB),
                   reader.failed)
        # The server holds the session and the client's registration (it owns the connection).
        wait_until(lambda: (lambda st: st.get("sessions") == 1 and st.get("registrations", 0) >= 1)(status(lab)),
                   30, "the server holding the session and the client's registration", reader.failed)
        before = status(lab)
        at = reader.received()
        started = time.monotonic()
        readdress(lab, old, new)
        log("ok   - %s: rtun0 readdressed to %s peer %s at %.1f MiB received" % (tag, new[0], new[1], at / MIB))
        wait_until(lambda: "our address changes from %s to %s" % (old[1], new[1]) in lab.log_text(client), 15,
                   "the client noticing its new address", reader.failed)
        answer = "points at us directly" if tag in ("direct", "v6") else "expects our handover"
        wait_until(lambda: answer in lab.log_text(client), 30, "the client logging the server's answer (%r)" % answer,
                   lambda: reader.failed() or ("refused our move" in lab.log_text(client) and "the server refused"))
        if tag not in ("direct", "v6"):
            wait_until(lambda: "handover to %s: 1 of 1" % CARRIER in lab.log_text(client), 30,
                       "the client's handover being answered", reader.failed)
        wait_until(lambda: reader.received() >= at + 2 * MIB, 60, "the download going on after the move",
                   reader.failed)
        log("ok   - %s: the download goes on %.2f s after the readdress (%.1f MiB received)" % (
            tag, time.monotonic() - started, reader.received() / MIB))
        if tag == "mac":  # the carrier's segments on the new path are signed and verified
            after = status(lab)
            verified = after.get("segment_mac_verified", 0) - before.get("segment_mac_verified", 0)
            if after.get("segment_mac_protected", 0) < 1 or verified <= 0 or after.get("segment_mac_dropped_bad"):
                raise Failure("segment MAC at the server: protected %s, verified %d since the readdress, dropped "
                              "bad %s" % (after.get("segment_mac_protected"), verified,
                                          after.get("segment_mac_dropped_bad")))
            log("ok   - mac: the server verified %d signed segments since the readdress, dropped none as bad" %
                verified)
        if tag not in ("direct", "v6"):  # while the carrier is still live: the NAT in c took the new path
            counters = nat_counters(lab)
            if counters.get("admitted", 0) < 2:
                raise Failure("the NAT in c admitted %s new flows, want >= 2 (the channel and the synthetic SYN): %s"
                              % (counters.get("admitted"), counters))
            table = lab.run_in("c", ["cat", "/proc/net/nf_conntrack"]).stdout
            tracked = [line for line in table.splitlines() if "src=%s" % NEW[1] in line and "dport=7000" in line]
            if not any(" ESTABLISHED " in line for line in tracked):
                raise Failure("the NAT in c tracks no ESTABLISHED carrier from %s:\n%s" % (NEW[1], "\n".join(tracked)))
            log("ok   - %s: the NAT in c admitted %d new flows and tracks the carrier from %s as ESTABLISHED" % (
                tag, counters["admitted"], NEW[1]))
        done = wait_until(reader.done, 120, "the download finishing", reader.failed)
        words = done.split()
        if int(words[1]) != SIZE or words[2] != want_digest:
            raise Failure("received %s bytes sha256 %s, want %d bytes sha256 %s" % (words[1], words[2], SIZE,
                                                                                    want_digest))
        log("ok   - %s: %d MiB byte-exact (SHA-256) with a clean EOF" % (tag, SIZE // MIB))
    finally:
        reader.kill()

    st = status(lab)
    summary = {k: st.get(k) for k in ("peer_moves", "peer_moves_applied", "peer_moves_refused", "peer_moves_rebound",
                                       "peer_moves_expected", "handover_syns_accepted", "handover_syns_forged",
                                       "handover_syns_replayed")}
    if st.get("peer_moves_applied", 0) < 1 or st.get("peer_moves_refused", 0) != 0:
        raise Failure("server status %s: want peer_moves_applied >= 1, peer_moves_refused 0" % summary)
    if tag in ("direct", "v6"):
        if st.get("peer_moves_rebound", 0) < 1 or st.get("handover_syns_accepted", 0) != 0:
            raise Failure("server status %s: want peer_moves_rebound >= 1, handover_syns_accepted 0" % summary)
    else:
        if st.get("handover_syns_accepted", 0) < 1 or st.get("handover_syns_forged", 0) != 0 or \
                st.get("handover_syns_replayed", 0) != 0:
            raise Failure("server status %s: want handover_syns_accepted >= 1, none forged or replayed" % summary)
    log("ok   - %s: server status %s" % (tag, summary))
    # Information only (no timed assertion): from the client noticing the change to the
    # server's answer, and to the handover's SYN-ACK, by the client's log timestamps.
    stamps = {}
    for line in lab.log_text(client).splitlines():
        for key, needle in (("change", "our address changes"), ("answer", answer), ("open", "handover to ")):
            if needle in line and key not in stamps:
                h, m, sec = line.split()[0].split(":")
                stamps[key] = (int(h) * 60 + int(m)) * 60 + float(sec)
    if "change" in stamps and "answer" in stamps:
        log("INFO %s: address change -> server's answer %.1f ms%s" % (
            tag, (stamps["answer"] - stamps["change"]) * 1000,
            ", -> handover answered %.1f ms" % ((stamps["open"] - stamps["change"]) * 1000) if "open" in stamps else ""))
    lab.stop_cleanly(labels)
    log("ok   - %s: client and server exited 0 on SIGTERM" % tag)


VARIANTS = ["direct", "nat", "mac", "v6"]


def main(lab):
    chosen = [n for n in os.environ.get("CLIENT_MOVE_VARIANTS", "").split(",") if n] or VARIANTS
    unknown = set(chosen) - set(VARIANTS)
    if unknown:
        raise Failure("unknown CLIENT_MOVE_VARIANTS %s" % ", ".join(sorted(unknown)))
    directory = os.path.join(lab.workdir, "files")
    os.makedirs(directory)
    want = write_file(directory)
    failed = []
    fresh = False
    for tag in VARIANTS:
        if tag not in chosen:
            continue
        if fresh:  # recreate the namespaces: empty conntrack, no rules, no processes
            lab.kill_all()
            lab.procs = {}
            run_tool([TOPOLOGY, "up", lab.name], "topology up")
        fresh = True
        started = time.monotonic()
        try:
            run_variant(lab, tag, directory, want)
            log("# %s passed in %.1f s" % (tag, time.monotonic() - started))
        except Failure as e:
            log("not ok - %s (after %.1f s): %s" % (tag, time.monotonic() - started, e))
            for label in ("%s-client" % tag, "%s-server" % tag):
                if label in lab.procs:
                    log("--- %s log (tail) ---\n%s" % (label, lab.log_text(label)[-3000:]))
            failed.append(tag)
    if failed:
        raise Failure("variants failed: %s" % ", ".join(failed))


if __name__ == "__main__":
    netns_lab.run("cm", main)
