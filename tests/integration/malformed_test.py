#!/usr/bin/env python3
"""Malformed packets on the server's UDP link while a transfer runs.

Raw UDP datagrams go straight to roam-server's link port, each carrying a broken IP packet
(built here with struct, checksums computed here):
  truncated IPv4 header (10 bytes), wrong version nibble, IHL 4, total length larger than
  the datagram, bad IPv4 header checksum, TCP with a bad checksum, unknown protocol 47,
  IPv4 fragments (MF set; non-zero offset), a datagram larger than the MTU (1600 bytes),
  and an empty datagram;
plus a well-formed control packet (a TCP SYN to a closed port) that must NOT count as
malformed, which also proves the packet builder's checksums right.

Meanwhile a 4 MiB echo transfer through the client's forward must stay byte-exact. After
SIGTERM the server's final counters line must show malformed >= the malformed IP packets
sent, and link rx dropped >= the oversize datagrams sent (the empty datagram may be counted
either way: reported).
"""
import hashlib
import os
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import TestFailure, check, log  # noqa: E402

TRANSFER = 4 * 1024 * 1024
CHUNK = 64 * 1024
MIN_ROUNDS = 20
SRC = "198.18.11.77"       # inside the client's prefix, so any answer is routable
MTU = 1500


# ------------------------------------------------------------- packet building

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return (~total) & 0xFFFF


def ip_bytes(text):
    return socket.inet_aton(text)


def ipv4(payload, proto, src=SRC, dst=harness.SERVER_ADDR, version=4, ihl=5, total_length=None,
         flags_offset=0, break_checksum=False, ident=0x1234):
    length = ihl * 4 + len(payload) if total_length is None else total_length
    header = struct.pack("!BBHHHBBH4s4s", (version << 4) | ihl, 0, length, ident, flags_offset, 64, proto, 0,
                         ip_bytes(src), ip_bytes(dst))
    # ihl > 5 would need options; we only build ihl <= 5 (ihl 4 keeps the 20 bytes on the wire)
    csum = checksum(header)
    if break_checksum:
        csum ^= 0x5555  # a change that cannot be an equivalent ones'-complement value
    header = header[:10] + struct.pack("!H", csum) + header[12:]
    return header + payload


def tcp(src, dst, sport, dport, flags=0x02, seq=1000, ack=0, payload=b"", break_checksum=False):
    segment = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0) + payload
    pseudo = ip_bytes(src) + ip_bytes(dst) + struct.pack("!BBH", 0, 6, len(segment))
    csum = checksum(pseudo + segment)
    if break_checksum:
        csum ^= 0x5555
    return segment[:16] + struct.pack("!H", csum) + segment[18:]


def build_packets(sport):
    syn = tcp(SRC, harness.SERVER_ADDR, 40000, sport)
    good = ipv4(syn, 6)
    cases = []  # (name, datagram, expected: "malformed" | "link_dropped" | "either" | "valid")
    cases.append(("truncated IPv4 header (10 bytes)", good[:10], "malformed"))
    cases.append(("wrong version nibble (5)", ipv4(syn, 6, version=5), "malformed"))
    cases.append(("IHL 4", ipv4(syn, 6, ihl=4, total_length=len(good)), "malformed"))
    cases.append(("total length > datagram", ipv4(syn, 6, total_length=len(good) + 100), "malformed"))
    cases.append(("bad IPv4 header checksum", ipv4(syn, 6, break_checksum=True), "malformed"))
    cases.append(("TCP bad checksum", ipv4(tcp(SRC, harness.SERVER_ADDR, 40001, sport, break_checksum=True), 6),
                  "malformed"))
    cases.append(("unknown protocol 47 (GRE)", ipv4(b"\x00\x00\x08\x00" + b"\x45" * 20, 47), "malformed"))
    cases.append(("IPv4 fragment (MF, offset 0)", ipv4(syn, 6, flags_offset=0x2000), "malformed"))
    cases.append(("IPv4 fragment (offset 185)", ipv4(b"\x00" * 24, 6, flags_offset=185), "malformed"))
    oversize_payload = tcp(SRC, harness.SERVER_ADDR, 40002, sport, flags=0x10, payload=b"\xAB" * (1600 - 40))
    oversize = ipv4(oversize_payload, 6)
    assert len(oversize) == 1600
    cases.append(("datagram larger than the MTU (1600 bytes)", oversize, "link_dropped"))
    cases.append(("empty datagram", b"", "either"))
    # Control: well formed, to a closed port: lwIP answers RST; must not count as malformed.
    cases.append(("control: valid SYN to a closed port", ipv4(tcp(SRC, harness.SERVER_ADDR, 40003, 7999), 6),
                  "valid"))
    return cases


def verify_builder(cases):
    """Self-check so a wrong builder cannot make the test pass or fail for the wrong reason."""
    control = dict((n, d) for n, d, _ in cases)["control: valid SYN to a closed port"]
    check(checksum(control[:20]) == 0, "builder: control IPv4 header checksum does not verify")
    pseudo = control[12:20] + struct.pack("!BBH", 0, 6, len(control) - 20)
    check(checksum(pseudo + control[20:]) == 0, "builder: control TCP checksum does not verify")
    bad_ip = dict((n, d) for n, d, _ in cases)["bad IPv4 header checksum"]
    check(checksum(bad_ip[:20]) != 0, "builder: 'bad IPv4 checksum' packet verifies")
    bad_tcp = dict((n, d) for n, d, _ in cases)["TCP bad checksum"]
    check(checksum(bad_tcp[:20]) == 0, "builder: 'TCP bad checksum' IP header is wrong")
    pseudo = bad_tcp[12:20] + struct.pack("!BBH", 0, 6, len(bad_tcp) - 20)
    check(checksum(pseudo + bad_tcp[20:]) != 0, "builder: 'TCP bad checksum' packet verifies")


def udp_drops(port):
    """The kernel's drop count for the UDP socket bound to 127.0.0.1:port (from /proc/net/udp)."""
    want = "0100007F:%04X" % port
    try:
        with open("/proc/net/udp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want:
                    return int(fields[-1])
    except OSError:
        pass
    return 0


# ------------------------------------------------------------- the test

def echo_transfer(pair, data):
    """Lock-step 64 KiB chunks: bounded data in flight, so the link's socket buffers never overflow."""
    sock = pair.connect()
    got = hashlib.sha256()
    received = 0
    try:
        for offset in range(0, len(data), CHUNK):
            chunk = data[offset:offset + CHUNK]
            sock.sendall(chunk)
            want = len(chunk)
            while want:
                part = sock.recv(want)
                if not part:
                    raise TestFailure("echo transfer: EOF after %d of %d bytes" % (received, len(data)))
                got.update(part)
                received += len(part)
                want -= len(part)
        sock.shutdown(socket.SHUT_WR)
        tail, _ = harness.recv_until_eof(sock, got)
        received += tail
    finally:
        sock.close()
    return received, got.hexdigest()


def main():
    # The datagrams come from the test's own socket, not the client's endpoint: the server
    # takes them (--udp-allow) so they reach the packet checks this test is about.
    with harness.Pair(mode="echo", server_extra=["--udp-allow", "127.0.0.1"]) as pair:
        cases = build_packets(pair.sport)
        verify_builder(cases)
        sent = {name: 0 for name, _, _ in cases}
        done = threading.Event()
        target = ("127.0.0.1", pair.server_udp)
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw.bind(("127.0.0.1", 0))

        def inject():
            rounds = 0
            while rounds < MIN_ROUNDS or not done.is_set():
                for name, datagram, _ in cases:
                    raw.sendto(datagram, target)
                    sent[name] += 1
                rounds += 1
                time.sleep(0.005)
            return rounds

        data = harness.pseudo_random_bytes(0x4A11, TRANSFER)
        injector = harness.Worker(inject, name="inject")
        injector.start()
        try:
            received, digest = echo_transfer(pair, data)
        finally:
            done.set()
        rounds = injector.finish()
        raw.close()
        log("sent %d rounds of %d datagrams during the transfer" % (rounds, len(cases)))
        check(received == TRANSFER, "echo transfer: received %d bytes, expected %d" % (received, TRANSFER))
        check(digest == harness.sha256(data), "echo transfer: bytes differ (sha256 %s)" % digest)
        log("4 MiB echo byte-exact while malformed packets arrived")

        # The datagrams share the server's socket queue with the forward's traffic: one more
        # round trip through the forward means the server has read everything sent before it.
        received, digest = echo_transfer(pair, b"flush")
        check(received == 5, "post-injection echo failed")
        check(pair.server.alive(), "roam-server died during the injection\n" + pair.server.tail())
        check(pair.client.alive(), "roam-client died during the injection\n" + pair.client.tail())
        kernel_drops = udp_drops(pair.server_udp)

        _, server = pair.stop_all()
        c = server.counters
        log("server final counters: %s" % (c,))

    n_malformed = sum(sent[n] for n, _, kind in cases if kind == "malformed")
    n_oversize = sum(sent[n] for n, _, kind in cases if kind == "link_dropped")
    n_empty = sum(sent[n] for n, _, kind in cases if kind == "either")
    n_valid = sum(sent[n] for n, _, kind in cases if kind == "valid")
    log("sent: %d malformed IP packets, %d oversize, %d empty, %d valid control; kernel UDP drops at the server: %d"
        % (n_malformed, n_oversize, n_empty, n_valid, kernel_drops))
    if kernel_drops:
        log("WARNING: the kernel dropped %d datagrams before roam-server read them; lower bounds relaxed by that"
            % kernel_drops)

    check(c.malformed >= n_malformed - kernel_drops,
          "malformed counter %d < %d malformed IP packets sent" % (c.malformed, n_malformed))
    check(c.rx_dropped >= n_oversize - kernel_drops,
          "link rx dropped %d < %d oversize datagrams sent" % (c.rx_dropped, n_oversize))
    check(c.malformed + c.rx_dropped >= n_malformed + n_oversize + n_empty - kernel_drops,
          "malformed %d + rx dropped %d < %d malformed + oversize + empty datagrams sent"
          % (c.malformed, c.rx_dropped, n_malformed + n_oversize + n_empty))
    # Nothing well formed may be counted as malformed: not the control packets, not the transfer.
    check(c.malformed <= n_malformed + n_empty,
          "malformed counter %d > %d malformed + empty sent: well-formed packets were rejected"
          % (c.malformed, n_malformed + n_empty))
    if c.malformed >= n_malformed + n_empty and c.malformed - n_malformed >= n_empty:
        where = "as malformed"
    elif c.rx_dropped >= n_oversize + n_empty:
        where = "as link rx dropped"
    else:
        where = "partly in each (malformed %d, rx dropped %d)" % (c.malformed, c.rx_dropped)
    log("empty datagrams were counted %s" % where)
    log("malformed %d (expected %d + %d empty), rx dropped %d (expected %d oversize)"
        % (c.malformed, n_malformed, n_empty, c.rx_dropped, n_oversize))


if __name__ == "__main__":
    harness.run(main)
