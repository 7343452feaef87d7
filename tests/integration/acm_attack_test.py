#!/usr/bin/python3
"""Attacks on the control channel and its Address Change Messages, made with scapy on the
UDP carrier link, while an echo transfer runs beside them; none may move a connection.

Topology: harness.TwoServers (echo) with a harness.Relay between all nodes: an on-path
attacker that sees every carrier packet (one IP packet per UDP datagram) and can send its
own. The relay records the TCP segments of the control channels (userspace port 7001).

Phase 1 (attacks):
  1. An echo pump starts (a writer and a reader thread; seeded bytes) through the forward.
  2. A genuine move A -> B ("ok moved 1 of 1"); the relay records A's ACM frame on the wire.
  3. Attacks, each followed by a check that nothing moved (B holds the session, A none, the
     echo goes on):
     a. the ACM's IP packet sent again as it was (TCP drops the duplicate);
     b. replayed: the same frame re-sent at the client's current sequence number on the
        channel with A: it authenticates, its counter is old -> refused, channel reset;
     c. forged: the frame injected on the channel with B (other session keys) -> fails
        authentication, channel reset, the client opens a new one and registers again;
     d. 300 blind forged ACM frames at random sequence numbers (an off-path attacker);
        those on the channel with B (about half, the rest carry A's address) far from
        its window are dropped by the client's kernel sequence filter before it reads them;
     e. 100 old-style unauthenticated move notices (UDP, "RSMV") claiming A moved to
        198.18.14.2: no one listens for them any more.
  4. A genuine move B -> A still works afterwards (over the re-established channel).
  5. The echo is byte-exact (length and SHA-256); the client's counters (logged at exit)
     show frames replayed >= 1 and forged >= 1, ACMs applied == 2 and refused == 0,
     2 connections moved, and at least 100 datagrams dropped in the kernel (d.).
Phase 2 (wrong key): a client whose --known-hosts pins A's id to another key (--pin-keys)
  refuses A's channel; `roamctl migrate A -> B` moves nothing ("ok moved 0 of 1": a client
  that cannot be told is not moved) and the connection keeps echoing on A.
Phase 3 (trust on first use): a client with an empty --known-hosts file learns A's key and
  saves it (the key A logged at start).
Phase 4 (--segment-mac on every node): a data segment injected at exactly the sequence
  number the client expects on its data connection (TCP alone would take it: see
  tests/apps/segment_mac_guard_test.cpp), once without the MAC option and once with a
  made-up one, is dropped; the echo stays byte-exact through a move A -> B, and the client
  protects the moved connection again with B's key.
"""
import base64
import hashlib
import os
import random
import re
import socket
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

from scapy.all import IP, TCP, UDP, Raw, raw  # noqa: E402

CHANNEL_PORT = 7001
SERVICE_PORT = 7000
SEED = 0xAC3
CHUNK = 32 * 1024
LEAD = 32 * CHUNK  # the echo pump's writer stays at most 1 MiB ahead of its reader


class ChannelRecorder:
    """Watches the relay: the latest sequence/ack numbers of each control-channel TCP flow
    and every payload a server sent on one."""

    def __init__(self):
        self.lock = threading.Lock()
        self.flows = {}     # (src, sport, dst, dport) -> {"seq_end": n, "ack": n}
        self.payloads = []  # (time, src, dst, dport, seq, payload) server -> client

    def watch(self, _name, data):
        # Cheap filter before scapy: IPv4, TCP, either port the channel's.
        if len(data) < 40 or data[0] >> 4 != 4 or data[9] != 6:
            return
        ihl = (data[0] & 0x0F) * 4
        sport, dport = struct.unpack("!HH", data[ihl:ihl + 4])
        if CHANNEL_PORT not in (sport, dport) and SERVICE_PORT not in (sport, dport):
            return
        packet = IP(data)
        tcp = packet[TCP]
        payload = bytes(tcp.payload)
        span = len(payload) + (1 if tcp.flags & 0x03 else 0)  # SYN/FIN take a number
        key = (packet.src, tcp.sport, packet.dst, tcp.dport)
        with self.lock:
            flow = self.flows.setdefault(key, {"seq_end": tcp.seq, "ack": 0})
            end = (tcp.seq + span) & 0xFFFFFFFF
            if ((end - flow["seq_end"]) & 0xFFFFFFFF) < 0x80000000:
                flow["seq_end"] = end
            if tcp.flags & 0x10:
                flow["ack"] = tcp.ack
            if payload and tcp.sport == CHANNEL_PORT:
                self.payloads.append((time.monotonic(), packet.src, packet.dst, tcp.dport, tcp.seq, payload))

    def channel_to(self, server, port=CHANNEL_PORT):
        """(client port, next sequence number the client expects from SERVER, the client's
        next own sequence number) of the newest flow from the client to SERVER:PORT."""
        with self.lock:
            candidates = [(key, flow) for key, flow in self.flows.items()
                          if key[0] == harness.CLIENT_ADDR and key[2] == server and key[3] == port]
            if not candidates:
                raise TestFailure("no flow to %s:%d seen on the link" % (server, port))
            key, flow = candidates[-1]
            return key[1], flow["ack"], flow["seq_end"]


class EchoPump:
    """Writes seeded bytes through the forward and reads the echo back, concurrently."""

    def __init__(self, sock):
        self.sock = sock
        self.stop = threading.Event()
        self.sent = hashlib.sha256()
        self.received = hashlib.sha256()
        self.sent_bytes = 0
        self.received_bytes = 0
        self.rng = random.Random(SEED)
        self.writer = harness.Worker(self._write, name="echo-writer")
        self.reader = harness.Worker(self._read, name="echo-reader")

    def start(self):
        self.writer.start()
        self.reader.start()

    def _write(self):
        while not self.stop.is_set():
            # At most LEAD bytes in flight: unbounded, the writer queued megabytes in the
            # socket buffers that the Python relay then took half a minute to echo back
            # at finish().
            if self.sent_bytes - self.received_bytes > LEAD:
                time.sleep(0.002)
                continue
            chunk = self.rng.randbytes(CHUNK)
            self.sock.sendall(chunk)
            self.sent.update(chunk)
            self.sent_bytes += len(chunk)
            time.sleep(0.002)  # a steady stream, not a flood: the relay is Python
        self.sock.shutdown(socket.SHUT_WR)

    def _read(self):
        while True:
            data = self.sock.recv(1 << 16)
            if not data:
                return
            self.received.update(data)
            self.received_bytes += len(data)

    def wait_for(self, count, timeout=harness.IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.received_bytes < count:
            if time.monotonic() > deadline:
                raise TestFailure("echo stalled at %d bytes (wanted %d)" % (self.received_bytes, count))
            time.sleep(0.01)

    def flowing(self, what):
        """Checks that more echo arrives (the connection was not moved away or broken)."""
        before = self.received_bytes
        self.wait_for(before + 4 * CHUNK)
        log("echo still flowing after %s (%d bytes back)" % (what, self.received_bytes))

    def finish(self):
        self.stop.set()
        self.writer.finish()
        self.reader.finish()
        check(self.received_bytes == self.sent_bytes,
              "echo returned %d bytes, %d sent" % (self.received_bytes, self.sent_bytes))
        check(self.received.digest() == self.sent.digest(), "echo bytes differ from the bytes sent")
        log("echo byte-exact: %d bytes, sha256 %s" % (self.sent_bytes, self.sent.hexdigest()[:16]))


def wait_until(what, predicate, timeout=harness.READY_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TestFailure("timed out waiting for " + what)
        time.sleep(0.05)


def segment(server, client_port, seq, ack, payload, server_port=CHANNEL_PORT):
    return raw(IP(src=server, dst=harness.CLIENT_ADDR, ttl=64) /
               TCP(sport=server_port, dport=client_port, seq=seq, ack=ack, flags="PA", window=65535) /
               Raw(payload))


def follower_counters(client):
    text = client.stderr_text()
    match = re.search(r"follower: channels opened (\d+) established (\d+) failed (\d+) untrusted (\d+); "
                      r"frames forged (\d+) replayed (\d+) dropped (\d+); ACMs (\d+) applied (\d+) refused (\d+).*"
                      r"connections moved (\d+)", text)
    if match is None:
        raise TestFailure("no follower counters in the client's log:\n" + client.tail())
    names = ("opened", "established", "failed", "untrusted", "forged", "replayed", "dropped", "acms", "applied",
             "refused", "moved")
    return dict(zip(names, map(int, match.groups())))


def nothing_moved(t, pump, where, what):
    pump.flowing(what)
    other = "A" if where == "B" else "B"
    check(t.status(where)["sessions"] == 1, "%s: the session left %s" % (what, where))
    check(t.status(other)["sessions"] == 0, "%s: a session appeared on %s" % (what, other))


def phase_attacks():
    log("phase 1: attacks beside a live echo")
    recorder = ChannelRecorder()
    relay = harness.Relay(watch=recorder.watch)
    relay.start()
    try:
        with harness.TwoServers(mode="echo", routes=relay.routes) as t:
            sock = t.connect()
            pump = EchoPump(sock)
            pump.start()
            pump.wait_for(8 * CHUNK)
            wait_until("A to register the connection", lambda: t.status("A")["registrations"] >= 1)

            started = time.monotonic()
            t.migrate("A", "B", expect_moved=1)
            wait_until("the client's ACK of the ACM", lambda: t.status("A")["acms_applied"] == 1)
            # All of the client's connections to A moved: announced in the global form.
            check(t.status("A")["acms_global"] == 1, "the whole move was not announced in the global form")
            wait_until("B to register the connection", lambda: t.status("B")["registrations"] >= 1)
            pump.flowing("the genuine move A -> B")
            with recorder.lock:
                acm = [p for p in recorder.payloads if p[0] >= started and p[1] == harness.SERVER_ADDR]
            check(len(acm) >= 1, "the relay saw no ACM from A")
            _, _, _, acm_port, acm_seq, frame = acm[-1]
            log("recorded A's ACM frame: %d bytes at seq %d" % (len(frame), acm_seq))

            # a. the same IP packet again.
            port, _, client_seq = recorder.channel_to(harness.SERVER_ADDR)
            relay.inject("client", segment(harness.SERVER_ADDR, acm_port, acm_seq, client_seq, frame))
            nothing_moved(t, pump, "B", "a duplicate of the ACM's packet")

            # b. the frame re-sequenced into the channel with A: replayed.
            port, expected, client_seq = recorder.channel_to(harness.SERVER_ADDR)
            relay.inject("client", segment(harness.SERVER_ADDR, port, expected, client_seq, frame))
            nothing_moved(t, pump, "B", "a replayed ACM on A's channel")

            # c. the frame injected into the channel with B: forged there.
            registrations = t.status("B")["registrations"]
            port, expected, client_seq = recorder.channel_to(harness.SERVER_B_ADDR)
            relay.inject("client", segment(harness.SERVER_B_ADDR, port, expected, client_seq, frame))
            nothing_moved(t, pump, "B", "A's ACM injected on B's channel")
            wait_until("the client to register again on a new channel to B",
                       lambda: t.status("B")["registrations"] > registrations)

            # d. blind forgeries at random sequence numbers, from both servers' addresses.
            rng = random.Random(SEED + 1)
            port_b = recorder.channel_to(harness.SERVER_B_ADDR)[0]
            for _ in range(300):
                forged = struct.pack("!H", 8 + 90 + 16) + rng.randbytes(8 + 90 + 16)
                server = rng.choice([harness.SERVER_ADDR, harness.SERVER_B_ADDR])
                relay.inject("client", segment(server, port_b, rng.getrandbits(32), rng.getrandbits(32), forged))
            nothing_moved(t, pump, "B", "300 blind forged ACMs")

            # e. the old unauthenticated move notice, which no longer exists.
            notice = (b"RSMV" + bytes([1, 1]) + struct.pack("!I", 1) + bytes([4]) +
                      socket.inet_aton(harness.SERVER_ADDR) + socket.inet_aton("198.18.14.2") +
                      struct.pack("!HH", 7000, 7000))
            for _ in range(100):
                relay.inject("client", raw(IP(src=harness.SERVER_ADDR, dst=harness.CLIENT_ADDR) /
                                           UDP(sport=CHANNEL_PORT, dport=CHANNEL_PORT) / Raw(notice)))
            nothing_moved(t, pump, "B", "100 unauthenticated move notices")

            # The genuine path still works.
            t.migrate("B", "A", expect_moved=1)
            wait_until("the client's ACK of B's ACM", lambda: t.status("B")["acms_applied"] == 1)
            pump.flowing("the genuine move B -> A")
            check(t.status("A")["sessions"] == 1, "the session did not come back to A")
            pump.finish()
            t.client.stop()
            counters = follower_counters(t.client)
            log("client: %s" % counters)
            check(counters["replayed"] >= 1, "the replayed frame was not counted: %s" % counters)
            check(counters["forged"] >= 1, "the forged frame was not counted: %s" % counters)
            check(counters["applied"] == 2 and counters["refused"] == 0,
                  "expected exactly the 2 genuine ACMs applied: %s" % counters)
            check(counters["moved"] == 2, "expected 2 connection moves: %s" % counters)
            check(counters["untrusted"] == 0, "a server was distrusted: %s" % counters)
            # d.: the seeded forgeries put 140-160 on B's channel; ~1.2 % of random sequence
            # numbers fall inside the filter's range and go on to the userspace check.
            in_kernel = re.search(r"dropped in kernel (\d+)", t.client.stderr_text())
            check(in_kernel is not None and int(in_kernel.group(1)) >= 100,
                  "the kernel sequence filter dropped too few blind forgeries: %s" %
                  (in_kernel.group(0) if in_kernel else "no count in the client's log"))
    finally:
        relay.close()


def mac_counters(proc):
    lines = re.findall(r"segment MAC: connections (\d+), signed (\d+), verified (\d+), dropped missing (\d+) bad (\d+)",
                       proc.stderr_text())
    if not lines:
        raise TestFailure("no segment MAC counters in the log:\n" + proc.tail())
    return dict(zip(("connections", "signed", "verified", "missing", "bad"), map(int, lines[-1])))


def phase_segment_mac():
    log("phase 4: --segment-mac stops an in-window forgery on the data connection itself")
    recorder = ChannelRecorder()
    relay = harness.Relay(watch=recorder.watch)
    relay.start()
    try:
        mac = ["--segment-mac"]
        with harness.TwoServers(mode="echo", routes=relay.routes, server_extra=mac, client_extra=mac) as t:
            sock = t.connect()
            pump = EchoPump(sock)
            pump.start()
            pump.wait_for(8 * CHUNK)
            wait_until("A to register the connection", lambda: t.status("A")["registrations"] >= 1)
            pump.flowing("signing starts")
            # What TCP alone would take: the next sequence number the client expects from A
            # on the data connection, a valid checksum, no MAC; then one with a made-up MAC.
            port, expected, client_seq = recorder.channel_to(harness.SERVER_ADDR, SERVICE_PORT)
            relay.inject("client", segment(harness.SERVER_ADDR, port, expected, client_seq, b"X" * 64,
                                           SERVICE_PORT))
            made_up = raw(IP(src=harness.SERVER_ADDR, dst=harness.CLIENT_ADDR) /
                          TCP(sport=SERVICE_PORT, dport=port, seq=expected, ack=client_seq, flags="PA", window=65535,
                              options=[(253, bytes([0x52, 0x53]) + os.urandom(12))]) / Raw(b"Y" * 64))
            relay.inject("client", made_up)
            nothing_moved(t, pump, "A", "forged data segments")
            t.migrate("A", "B", expect_moved=1)
            wait_until("B to register the connection", lambda: t.status("B")["registrations"] >= 1)
            pump.flowing("the move with signing")
            pump.finish()
            t.client.stop()
            counters = mac_counters(t.client)
            log("client: %s" % counters)
            check(counters["missing"] >= 1 and counters["bad"] >= 1, "forgeries not dropped: %s" % counters)
            check(counters["signed"] > 100 and counters["verified"] > 100, "too little signed: %s" % counters)
            # The key travels with the connection: the client's flow follows it to the new
            # server (rebound) and the registration there rolls the key over (rekeyed).
            moved = re.findall(r"; adopted (\d+) rebound (\d+) rekeyed (\d+)", t.client.stderr_text())
            check(moved and int(moved[-1][1]) >= 1 and int(moved[-1][2]) >= 1,
                  "the moved connection was not kept protected: %s %s" % (counters, moved[-1:] if moved else "-"))
    finally:
        relay.close()


def server_key(t, name):
    match = re.search(r"public key (\S+)", t.servers[name].stderr_text())
    check(match is not None, "server %s did not log its public key" % name)
    return match.group(1)


def phase_wrong_key(directory):
    log("phase 2: a pinned key that A does not have")
    path = os.path.join(directory, "pinned_hosts")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # Seen now: an entry last seen in 1970 is pruned at start, and A would be merely unknown.
    now = int(time.time())
    os.write(fd, ("%s %s %d %d\n" % (harness.SERVER_ADDR, base64.b64encode(os.urandom(32)).decode(), now, now)).encode())
    os.close(fd)
    with harness.TwoServers(mode="echo", client_extra=["--known-hosts", path, "--pin-keys"]) as t:
        sock = t.connect()
        harness.echo_round_trip(sock)
        # The follower's error names the verdict (crypto::trust_verdict_name).
        check(t.client.wait_for_log("KEY MISMATCH"), "the client logged no key mismatch:\n" + t.client.tail())
        result = t.migrate_raw("A", "B")
        moved = harness.parse_moved(result.stdout.strip())
        check(result.returncode == 0 and moved is not None and moved[:2] == (0, 1),
              "a client under a wrong key was moved: %r" % result.stdout)
        harness.echo_round_trip(sock)
        check(t.status("A")["sessions"] == 1 and t.status("B")["sessions"] == 0, "the session left A")
        sock.close()
        t.client.stop()
        counters = follower_counters(t.client)
        check(counters["untrusted"] >= 1 and counters["applied"] == 0, "unexpected: %s" % counters)


def phase_trust_on_first_use(directory):
    log("phase 3: trust on first use saves the server's key")
    path = os.path.join(directory, "known_hosts")
    with harness.TwoServers(mode="echo", client_extra=["--known-hosts", path]) as t:
        sock = t.connect()
        harness.echo_round_trip(sock)
        check(t.client.wait_for_log("learned (trust on first use)"),
              "the client logged no key learned on first use:\n" + t.client.tail())
        key = server_key(t, "A")
        sock.close()
    text = open(path).read()
    check(re.search(r"^%s %s \d+ \d+$" % (re.escape(harness.SERVER_ADDR), re.escape(key)), text, re.M),
          "known hosts file does not hold A's key:\n" + text)
    check(os.stat(path).st_mode & 0o077 == 0, "known hosts file is readable by others")


def main():
    phase_attacks()
    with tempfile.TemporaryDirectory(prefix="roam-acm-") as directory:
        phase_wrong_key(directory)
        phase_trust_on_first_use(directory)
    phase_segment_mac()


if __name__ == "__main__":
    harness.run(main)
